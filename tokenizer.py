"""The character tokenizer of the built-in tasks, and the interface every tokenizer offers.

`CharTokenizer` covers every character the synthetic tasks use (maze grids, moves,
`<answer>` tags, digits and arithmetic) with one id per character plus three
specials: PAD, BOS and EOS. It is the embedded default: nothing is downloaded.

Every tokenizer in passk offers the same small interface, which rollout.py,
train.py and eval.py rely on:
    vocab_size          ids the tokenizer can decode; the sampler masks ids >= vocab_size
    pad_id, eos_ids     padding id; the ids that end a response
    encode_prompt(text) -> list[int]   the prompt as the policy sees it (BOS + text)
    encode(text)        -> list[int]   plain text, no specials (responses, demonstrations)
    decode(ids)         -> str         stops at the first EOS, drops PAD/BOS

hf_tokenizer.HFTokenizer gives a Hugging Face tokenizer the same interface.
"""

import string

# Printable ASCII (space to '~') and newline: mazes, moves, tags, digits, operators, letters.
CHARACTERS = "\n" + "".join(chr(c) for c in range(32, 127))
assert all(c in CHARACTERS for c in string.digits + "SE*.LRUD<>/+-*()= ")


class CharTokenizer:
    """One id per character; ids 0, 1, 2 are PAD, BOS, EOS."""

    pad_id, bos_id, eos_id = 0, 1, 2
    n_special = 3

    def __init__(self):
        self.char_to_id = {c: i + self.n_special for i, c in enumerate(CHARACTERS)}
        self.id_to_char = {i: c for c, i in self.char_to_id.items()}
        self.vocab_size = self.n_special + len(CHARACTERS)
        self.eos_ids = [self.eos_id]

    def encode(self, text: str) -> list[int]:
        try:
            return [self.char_to_id[c] for c in text]
        except KeyError as err:
            raise ValueError(
                f"CharTokenizer cannot encode character {err.args[0]!r} in {text[:40]!r}"
            ) from None

    def encode_prompt(self, text: str) -> list[int]:
        return [self.bos_id] + self.encode(text)

    def decode(self, ids) -> str:
        chars = []
        for token in ids:
            token = int(token)
            if token == self.eos_id:
                break
            if token in self.id_to_char:  # PAD, BOS and masked ids are dropped
                chars.append(self.id_to_char[token])
        return "".join(chars)
