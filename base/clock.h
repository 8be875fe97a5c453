/* clock: the one monotonic clock every layer and process measures with
 * (CLOCK_MONOTONIC: comparable across the processes of one machine). */
#ifndef TIS_CLOCK_H
#define TIS_CLOCK_H

#include <stdint.h>

/* Monotonic seconds. */
double tis_now(void);
/* The same clock in whole milliseconds (leases, heartbeats, deadlines). */
uint64_t tis_now_ms(void);

#endif
