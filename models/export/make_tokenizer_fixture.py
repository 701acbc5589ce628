#!/usr/bin/env python3
"""Record Hugging Face CLIPTokenizer ids for a corpus of prompts.

Writes tests/fixtures/tokenizer_corpus.json: a list of {"prompt", "ids"}, with
ids exactly as diffusers asks for them (padding="max_length", max_length=77,
truncation=True). The corpus covers ASCII, accents, CJK, emoji, punctuation
runs, odd whitespace, special-token text and prompts past 77 tokens.
"""
import itertools
import json

from tiny_sd import load_tokenizer, repo_root

HAND_WRITTEN = [
    "a photo of an astronaut riding a horse on mars",
    "A Photo Of An Astronaut Riding A Horse On Mars",
    "portrait of a woman, oil painting, by Rembrandt, trending on artstation, 8k, highly detailed",
    "cyberpunk city at night, neon lights, rain, reflections, cinematic",
    "",
    " ",
    "a",
    "don't stop believin' we're they'll I'm you've he'd it's",
    "DON'T STOP BELIEVIN' WE'RE THEY'LL",
    "café crème brûlée à la mode, naïve façade, jalapeño, smörgåsbord",
    "Ångström Øresund Łódź Žižkov Ελληνικά Русский текст",
    "北京的秋天, 富士山と桜, 서울의 밤거리",
    "一只可爱的猫坐在窗台上，阳光明媚",
    "東京タワーの夜景、ネオン、雨",
    "🎉🎉🎉 party time 🥳 with 🐱 and 🐶",
    "👩‍🚀 astronaut emoji with ZWJ 👨‍👩‍👧‍👦 family 🏳️‍🌈 flag",
    "!!!???...,,,;;;:::---___***",
    "hello!!! world??? (masterpiece:1.2), [[best quality]], {detailed}",
    "tabs\tand\nnewlines\r\nand   multiple    spaces",
    "\u00a0non-breaking\u00a0space and\u2003em space and\u3000ideographic space",
    "numbers 123 4567 3.14159 1,000,000 2nd 3rd 42nd",
    "<|startoftext|> special tokens as text <|endoftext|>",
    "e\u0301 combining acute vs é precomposed",
    "ＦＵＬＬＷＩＤＴＨ letters and ｈａｌｆ",
    "mixed 中文 English 日本語 한국어 العربية עברית हिन्दी",
    "quotes “curly” ‘single’ «guillemets» „low“",
    "math ∑ ∫ √ ∞ ≈ ≠ ± × ÷ and arrows → ← ↑ ↓",
    "html &amp; &lt;tag&gt; and url https://example.org/path?q=1#frag",
    "email someone@example.com and #hashtag @mention $100 50% ^caret ~tilde `tick`",
    "zero\u200bwidth\u200bspace and soft\u00adhyphen",
    "control\u0007bell and \u0000 nul",
    " leading and trailing spaces ",
    "UPPER lower MiXeD CaSe",
    "über straße groß ÄÖÜ",
    "ǅ titlecase ǈ ǋ and ß ẞ",
    "İstanbul and ı dotless",
    "a" * 300,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "hyphen-ated words and under_scored_words and CamelCaseWords",
]

SUBJECTS = ["a red fox", "an old lighthouse", "a bowl of ramen", "a robot gardener", "the northern lights",
            "a knight in armour", "a tiny house", "a koi pond"]
STYLES = ["watercolor", "3D render", "neon noir", "oil painting", "photo, 35mm", "pixel art", "ukiyo-e",
          "charcoal sketch"]
EXTRAS = ["", ", highly detailed", "!!!", " 🌸", ", trending on artstation, 4k", " — café au lait"]


def corpus() -> list[str]:
    prompts = list(HAND_WRITTEN)
    for subject, style, extra in itertools.product(SUBJECTS, STYLES, EXTRAS):
        prompts.append(f"{subject}, {style}{extra}")
        if len(prompts) >= 240:
            break
    long_words = " ".join(f"word{i} detail{i}," for i in range(60))
    prompts.append(long_words)
    prompts.append(", ".join(SUBJECTS * 6) + " in the style of " + ", ".join(STYLES * 3))
    prompts.append("北京" * 100)
    prompts.append("🎉" * 100)
    return prompts


def main() -> None:
    root = repo_root()
    tokenizer = load_tokenizer(root / "models/tiny-sd/tokenizer")
    cases = []
    for prompt in corpus():
        ids = tokenizer(prompt, padding="max_length", max_length=77, truncation=True).input_ids
        untruncated = tokenizer(prompt).input_ids
        cases.append({"prompt": prompt, "ids": ids, "truncated": len(untruncated) > 77})
    out = root / "tests/fixtures/tokenizer_corpus.json"
    out.write_text(json.dumps(cases, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"{len(cases)} prompts, {sum(c['truncated'] for c in cases)} truncated -> {out}")


if __name__ == "__main__":
    main()
