#!/usr/bin/env python3
"""Writes tests/golden/nfc.tsv: inputs and their NFC from Python's
unicodedata.normalize('NFC', ...), for tests/test_unicode.c.

Usage: python3 scripts/make_nfc_golden.py > tests/golden/nfc.tsv
       python3 scripts/make_nfc_golden.py --tokenizer tests/golden/nfc_tokenizer

The second form (needs HF `tokenizers`, scripts/requirements-golden.txt)
writes a tiny byte-level BPE tokenizer.json with the NFC normalizer and the
ids HF tokenizers gives for texts in decomposed and precomposed forms,
around added tokens with normalized=false and =true (cases.json), for
tests/test_tokenizer.c.

Run it with the Python that generated engine/unicode_nfc_tables.c
(scripts/gen_unicode_tables.py --nfc): the Unicode version is written in the
header and the test compares it with the tables'. Each line:
name<TAB>input as hex bytes<TAB>expected as hex bytes.

Cases: hand-picked ones (combining sequences, reordering of several marks,
singletons, composition exclusions, non-starter decompositions, blocked
compositions, Hangul L+V, LV+T, already-NFC text, ASCII, Indic two-starter
compositions); the NFD of every code point with a canonical decomposition
and of a sample of Hangul syllables (so every table row is used); random
strings from a pool of such characters (fixed seed); and strings with
invalid UTF-8 bytes. unicodedata works on str, so for those the expected
output is defined here as tis treats them: each invalid byte passes through
unchanged and acts as a boundary (the valid stretches on either side are
normalised separately).
"""
import json
import os
import random
import sys
import unicodedata

NFC = lambda s: unicodedata.normalize('NFC', s)  # noqa: E731

HAND = [
    ('ascii', 'The quick brown fox jumps over the lazy dog. 0123456789 !@#$%^&*()'),
    ('empty_like_space', ' '),
    ('nfc_latin', 'caf\u00e9 na\u00efve \u00c5ngstr\u00f6m fa\u00e7ade'),
    ('nfc_korean', '\ud55c\uad6d\uc5b4 \ud14c\uc2a4\ud2b8'),
    ('nfc_cjk_emoji', '\u4e2d\u6587 \U0001f44b\U0001f3fd \u0939\u093f\u0928\u094d\u0926\u0940'),
    ('e_acute', 'e\u0301'),
    ('cafe_decomposed', 'cafe\u0301 A\u030angstro\u0308m'),
    ('a_ring', 'A\u030a'),
    ('two_marks_compose_both', 'a\u0323\u0302'),        # -> U+1EAD
    ('two_marks_reorder', 'a\u0302\u0323'),             # 230 before 220: reorder, then compose
    ('three_marks', 'o\u031b\u0301\u0323'),             # 216, 230, 220
    ('marks_same_class', 'a\u0301\u0300'),              # equal classes keep their order
    ('mark_blocked_by_same_class', 'a\u0300\u0301'),
    ('precomposed_then_lower_mark', '\u00e0\u0323'),    # decomposes, reorders, recomposes
    ('starter_blocks', 'a b\u0308 c\u0327'),
    ('leading_marks', '\u0301\u0323e'),
    ('only_marks', '\u0308\u0301\u0323\u0345'),
    ('greek_iota', '\u03c9\u0345\u0313\u0301'),
    ('greek_dialytika_tonos', '\u0390 \u03b9\u0308\u0301 \u0344'),
    ('singleton_angstrom', '\u212b'),
    ('singleton_ohm_kelvin', '\u2126 \u212a'),
    ('singleton_marks', '\u0340\u0341\u0343 \u0374 \u037e \u0387'),
    ('cjk_compat', '\uf900\uf901 \U0002f800\U0002fa1d'),
    ('exclusion_devanagari', '\u0958\u0959\u095a\u095f'),
    ('exclusion_decomposed_stays', '\u0915\u093c'),
    ('exclusion_hebrew', '\ufb1d\ufb1f\ufb2a\ufb4e'),
    ('exclusion_math', '\u2adc \u2add\u0338'),
    ('exclusion_music', '\U0001d15e\U0001d160\U0001d1bb'),
    ('non_starter_decomp', '\u0f73\u0f75\u0f81'),
    ('tibetan_reorder', '\u0f40\u0f72\u0f71'),
    ('kannada_two_starters', '\u0cc6\u0cc2\u0cd5'),      # -> U+0CCB
    ('oriya_bengali_tamil', '\u0b47\u0b3e \u09c7\u09d7 \u0bc6\u0bbe \u0dd9\u0dcf\u0dca'),
    ('myanmar', '\u1025\u102e'),
    ('not_greater', '>\u0338 =\u0338 <\u0338'),
    ('hangul_lv', '\u1100\u1161'),
    ('hangul_lvt', '\u1100\u1161\u11a8'),
    ('hangul_lv_plus_t', '\uac00\u11a8'),
    ('hangul_lvt_plus_t', '\uac01\u11a8'),               # LVT does not take a T
    ('hangul_not_t', '\uac00\u11a7'),                    # U+11A7 is below the T range
    ('hangul_last_t', '\uac00\u11c2 \uac00\u11c3'),
    ('hangul_edges', '\u1112\u1175\u11c2 \u1113\u1161'),
    ('hangul_mark_between', '\u1100\u0301\u1161'),
    ('hangul_sentence', ''.join(unicodedata.normalize('NFD', '\ud55c\uad6d\uc5b4 \ud14c\uc2a4\ud2b8\uc785\ub2c8\ub2e4.'))),
    ('vietnamese_nfd', unicodedata.normalize('NFD', 'Ti\u1ebfng Vi\u1ec7t c\u00f3 nhi\u1ec1u d\u1ea5u')),
    ('long_mark_run', 'a' + '\u0301\u0316' * 40),         # past the insertion-sort limit
    ('mark_run_mixed', 'x' + ''.join('\u0300\u0316\u0327\u031b\u0345\u05b0'[i % 6] for i in range(70))),
]

POOL = ('aeiouAEOUnc \u03b1\u03b7\u03c9\u03a9\u03b9\u0415\u0418\u0430'  # starters that compose
        '\u0300\u0301\u0302\u0303\u0308\u030a\u030c\u0313\u0316\u0323\u0327\u0328\u031b'
        '\u0345\u0338\u05b0\u0f71\u0f72\u0f74\u093c\u0cd5\u0cc2'        # marks / second starters
        '\u212b\u2126\u0340\u0343\u0958\ufb1d\u0344\u0f73\u2adc\uf900'  # singletons, exclusions
        '\u00e9\u00c5\u1e69\u1ec7\u01d5\u0cc6\u0915\u0b47\u0b3e'       # precomposed, Indic
        '\u1100\u1112\u1161\u1175\u11a7\u11a8\u11c2\uac00\uac01\ud7a3'  # Hangul
        '\U0001d15e\U0001d165\u4e2d\U0001f600')


def nfd_cases():
    """The NFD of every code point with a canonical decomposition (Hangul
    aside), 64 per case, and of every 53rd Hangul syllable."""
    cps = [cp for cp in range(0x110000)
           if not 0xAC00 <= cp <= 0xD7A3 and unicodedata.decomposition(chr(cp))
           and not unicodedata.decomposition(chr(cp)).startswith('<')]
    out = []
    for i in range(0, len(cps), 64):
        s = ' '.join(unicodedata.normalize('NFD', chr(cp)) for cp in cps[i:i + 64])
        out.append(('nfd_all_%04X' % cps[i], s))
    hangul = ''.join(unicodedata.normalize('NFD', chr(cp)) + ' '
                     for cp in range(0xAC00, 0xD7A4, 53))
    out.append(('nfd_hangul_sample', hangul))
    return out


def random_cases(n, rng):
    return [('random_%03d' % i, ''.join(rng.choice(POOL) for _ in range(rng.randint(1, 14))))
            for i in range(n)]


# Invalid bytes between valid stretches: (name, [str or bytes, ...]).
INVALID = [
    ('invalid_ff', ['a', b'\xff', 'b']),
    ('invalid_between_e_and_mark', ['e', b'\xff', '\u0301']),
    ('invalid_after_marks', ['o\u0301\u0323', b'\x80', '\u0323\u0301']),
    ('invalid_truncated', ['caf', b'\xc3', ' e\u0301', b'\xe2\x82', 'x']),
    ('invalid_surrogate', [b'\xed\xa0\x80', '\u1100\u1161']),
    ('invalid_overlong', ['A\u030a', b'\xc0\xaf', '\u0958']),
    ('invalid_past_max', [b'\xf4\x90\x80\x80', '\u0344']),
    ('invalid_lead_before_mark', ['e', b'\xcc', '\u0301']),
    ('invalid_only', [b'\xfe\xff\x80\xbf']),
]


def hexs(b):
    return b.hex()


def main():
    rng = random.Random(15)
    out = sys.stdout
    out.write('# tests/golden/nfc.tsv: GENERATED by scripts/make_nfc_golden.py from Python %s '
              'unicodedata\n# unicode %s\n# name<TAB>input hex<TAB>NFC hex\n'
              % (sys.version.split()[0], unicodedata.unidata_version))
    for name, s in HAND + nfd_cases() + random_cases(400, rng):
        out.write('%s\t%s\t%s\n' % (name, hexs(s.encode()), hexs(NFC(s).encode())))
    for name, parts in INVALID:
        raw = b''.join(p if isinstance(p, bytes) else p.encode() for p in parts)
        want = b''.join(p if isinstance(p, bytes) else NFC(p).encode() for p in parts)
        out.write('%s\t%s\t%s\n' % (name, hexs(raw), hexs(want)))


def bytes_to_unicode():
    """GPT-2's byte -> character map (engine/unicode.c unicode_byte_to_cpt)."""
    bs = (list(range(ord('!'), ord('~') + 1)) + list(range(0xA1, 0xAD)) +
          list(range(0xAE, 0x100)))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


TOK_WORDS = ['caf\u00e9', '\u00c5', '\ud55c', '\u1ed9', 'hello', ' world', ' e\u0301']
TOK_ADDED = [('<|im_end|>', True, False), ('<raw>', False, False), ('<norm>', False, True)]
TOK_CASES = [
    ('precomposed', 'caf\u00e9 \u00c5 \ud55c \u1ed9 hello world'),
    ('decomposed', 'cafe\u0301 A\u030a \u1112\u1161\u11ab o\u0302\u0323 hello world'),
    ('reordered_marks', 'o\u0323\u0302 o\u0302\u0323'),
    ('singleton_angstrom', '\u212b'),
    ('decomposed_word_in_vocab', ' e\u0301 e\u0301'),
    ('no_composition_across_special', 'cafe<|im_end|>\u0301'),
    ('special_then_decomposed', '<|im_end|>cafe\u0301<|im_end|>'),
    ('raw_added_token_then_mark', 'x<raw>\u0338y'),
    ('normalized_added_token_then_mark', 'x<norm>\u0338y'),
    ('normalized_added_token', 'a<norm>b\u0301'),
    ('ascii', 'hello world, plain ASCII text.'),
]


def tokenizer_fixture(outdir):
    import tokenizers
    from tokenizers import Tokenizer
    m = bytes_to_unicode()
    vocab = {m[b]: b for b in range(256)}
    merges = []
    for w in TOK_WORDS:
        sym = [m[b] for b in w.encode()]
        while len(sym) > 1:  # left to right: each prefix one merge longer
            a, b = sym[0], sym[1]
            if [a, b] not in merges:
                merges.append([a, b])
            vocab.setdefault(a + b, len(vocab))
            sym = [a + b] + sym[2:]
    added = []
    for content, special, normalized in TOK_ADDED:
        added.append({'id': len(vocab), 'content': content, 'single_word': False,
                      'lstrip': False, 'rstrip': False, 'normalized': normalized,
                      'special': special})
        vocab[content] = len(vocab)
    spec = {'version': '1.0', 'truncation': None, 'padding': None, 'added_tokens': added,
            'normalizer': {'type': 'NFC'},
            'pre_tokenizer': {'type': 'ByteLevel', 'add_prefix_space': False,
                              'trim_offsets': True, 'use_regex': True},
            'post_processor': None,
            'decoder': {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True,
                        'use_regex': True},
            'model': {'type': 'BPE', 'dropout': None, 'unk_token': None,
                      'continuing_subword_prefix': None, 'end_of_word_suffix': None,
                      'fuse_unk': False, 'byte_fallback': False, 'ignore_merges': False,
                      'vocab': vocab, 'merges': [' '.join(p) for p in merges]}}
    text = json.dumps(spec, ensure_ascii=False, indent=1)
    tok = Tokenizer.from_str(text)
    cases = [{'name': n, 'text': t, 'ids': tok.encode(t, add_special_tokens=False).ids}
             for n, t in TOK_CASES]
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, 'tokenizer.json'), 'w', encoding='utf-8') as f:
        f.write(text + '\n')
    with open(os.path.join(outdir, 'cases.json'), 'w', encoding='utf-8') as f:
        json.dump({'source': 'HF tokenizers %s Tokenizer.from_str(tokenizer.json).encode(text, '
                             'add_special_tokens=False).ids; unicodedata %s. Built by '
                             'scripts/make_nfc_golden.py --tokenizer.'
                             % (tokenizers.__version__, unicodedata.unidata_version),
                   'cases': cases}, f, ensure_ascii=True, indent=1)
        f.write('\n')


if __name__ == '__main__':
    if sys.argv[1:2] == ['--tokenizer'] and len(sys.argv) == 3:
        tokenizer_fixture(sys.argv[2])
    elif sys.argv[1:]:
        sys.exit('usage: make_nfc_golden.py [--tokenizer DIR]')
    else:
        main()
