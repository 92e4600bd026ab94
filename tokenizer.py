"""Tokenizers: a character tokenizer for the built-in tasks, and a wrapper over Hugging Face ones.

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

`HFTokenizer` gives a `transformers` tokenizer that interface: the chat template (system +
user message -> the assistant turn to complete) when asked, a plain prompt for base models,
every end-of-turn id as EOS (`<|im_end|>`, `<|eot_id|>`, eos_token, the model's generation
config), and vocab_size = len(tokenizer), so the ids of a padded embedding table (Qwen's has
more rows than its tokenizer has tokens) are never sampled. Left out: tool calls, multi-turn
prompts, and few-shot examples inside the chat (a task writes them into its prompt text).
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
            raise ValueError(f"CharTokenizer cannot encode character {err.args[0]!r} in {text[:40]!r}") from None

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


# ----------------------------------------------------------------------------- Hugging Face tokenizers

# End-of-turn tokens of common chat formats (Qwen/ChatML, Llama 3, Gemma, Phi): whichever the vocabulary
# has end a response, besides eos_token, so an instruct model stops where its chat format says.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>", "<|end|>")


class HFTokenizer:
    """A `transformers` tokenizer behind passk's interface; `chat` formats prompts with its chat template."""

    def __init__(self, hf_tokenizer, *, chat: bool = False, system_prompt: str = "", extra_eos_ids=(),
                 name: str = "", max_vocab: int = None):
        self.hf = hf_tokenizer
        self.chat, self.system_prompt = chat, system_prompt
        if chat and not getattr(hf_tokenizer, "chat_template", None):
            raise ValueError(f"model.chat is on but the tokenizer of {name or 'this model'} has no chat template "
                             f"(a base model? set model.chat: false)")
        # ids beyond the embedding table cannot be produced either (max_vocab: the model's rows)
        self.vocab_size = min(len(hf_tokenizer), max_vocab or len(hf_tokenizer))
        vocab = hf_tokenizer.get_vocab()
        candidates = [hf_tokenizer.eos_token_id, *extra_eos_ids] + [vocab.get(t) for t in END_OF_TURN_TOKENS]
        # the tokenizer's own eos_token first: it ends the demonstrations of a warm start
        self.eos_ids = list(dict.fromkeys(int(i) for i in candidates if i is not None and 0 <= i < self.vocab_size))
        self._eos_set = frozenset(self.eos_ids)
        if not self.eos_ids:
            raise ValueError(f"the tokenizer of {name or 'this model'} has no EOS token: responses could never end")
        # padding is always masked out, so any decodable id will do when the tokenizer names none
        pad = hf_tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None and 0 <= pad < self.vocab_size else self.eos_ids[0]

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False)

    def encode_prompt(self, text: str) -> list[int]:
        if not self.chat:  # base models: the text itself, with BOS where the tokenizer adds one (Llama)
            return self.hf.encode(text, add_special_tokens=True)
        messages = ([{"role": "system", "content": self.system_prompt}] if self.system_prompt else []) + \
            [{"role": "user", "content": text}]
        # the template writes its own BOS and turn markers: render to text, then encode without specials
        rendered = self.hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.hf.encode(rendered, add_special_tokens=False)

    def decode(self, ids) -> str:
        """The response up to (not including) its first EOS; specials and undecodable ids dropped."""
        kept = []
        for token in ids:
            token = int(token)
            if token in self._eos_set:
                break
            if token < self.vocab_size:
                kept.append(token)
        return self.hf.decode(kept, skip_special_tokens=True)
