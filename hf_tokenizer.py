"""A Hugging Face tokenizer behind passk's tokenizer interface (tokenizer.py's): chat templates,
the end-of-turn ids that end a response, padding.

`chat` formats a prompt with the tokenizer's own chat template (system prompt optional); without
it the prompt is the text itself with the tokenizer's BOS. A response ends at the first of the
tokenizer's EOS and the end-of-turn tokens its vocabulary has, so an instruct model stops where its
chat format says. hf_policy.load_hf builds one beside the policy.
"""

# End-of-turn tokens of common chat formats (Qwen/ChatML, Llama 3, Gemma, Phi): whichever the
# vocabulary has end a response, besides eos_token, so an instruct model stops where its chat
# format says.
END_OF_TURN_TOKENS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<end_of_turn>",
    "<|end|>",
)


class HFTokenizer:
    """A `transformers` tokenizer behind passk's interface; `chat` formats prompts with its chat
    template."""

    def __init__(
        self,
        hf_tokenizer,
        *,
        chat: bool = False,
        system_prompt: str = "",
        extra_eos_ids=(),
        name: str = "",
        max_vocab: int = None,
    ):
        self.hf = hf_tokenizer
        self.chat, self.system_prompt = chat, system_prompt
        if chat and not getattr(hf_tokenizer, "chat_template", None):
            raise ValueError(
                f"model.chat is on but the tokenizer of {name or 'this model'} has no chat "
                "template (a base model? set model.chat: false)"
            )
        # ids beyond the embedding table cannot be produced either (max_vocab: the model's rows)
        self.vocab_size = min(len(hf_tokenizer), max_vocab or len(hf_tokenizer))
        vocab = hf_tokenizer.get_vocab()
        candidates = [hf_tokenizer.eos_token_id, *extra_eos_ids] + [
            vocab.get(t) for t in END_OF_TURN_TOKENS
        ]
        # the tokenizer's own eos_token first: it ends the demonstrations of a warm start
        self.eos_ids = list(
            dict.fromkeys(int(i) for i in candidates if i is not None and 0 <= i < self.vocab_size)
        )
        self._eos_set = frozenset(self.eos_ids)
        if not self.eos_ids:
            raise ValueError(
                f"the tokenizer of {name or 'this model'} has no EOS token: responses could "
                "never end"
            )
        # padding is always masked out, so any decodable id will do when the tokenizer names none
        pad = hf_tokenizer.pad_token_id
        self.pad_id = (
            int(pad) if pad is not None and 0 <= pad < self.vocab_size else self.eos_ids[0]
        )

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False)

    def encode_prompt(self, text: str) -> list[int]:
        if not self.chat:
            # base models: the text itself, with BOS where the tokenizer adds one (Llama)
            return self.hf.encode(text, add_special_tokens=True)
        messages = (
            [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        ) + [{"role": "user", "content": text}]
        # the template writes its own BOS and turn markers: render to text, encode without specials
        rendered = self.hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.hf.encode(rendered, add_special_tokens=False)

    def decode(self, ids) -> str:
        """The response up to (not including) its first EOS; specials and undecodable ids
        dropped."""
        kept = []
        for token in ids:
            token = int(token)
            if token in self._eos_set:
                break
            if token < self.vocab_size:
                kept.append(token)
        return self.hf.decode(kept, skip_special_tokens=True)
