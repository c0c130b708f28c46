// chat_stream.mjs PORT - one streaming chat completion against a sparrow
// daemon on 127.0.0.1:PORT through the official `openai` npm client (v4),
// printing the collected assistant text (and nothing else) to stdout and the
// usage object to stderr. tests/integration/test_server.py sends the same
// request itself and compares the text; keep the two requests identical.
import OpenAI from "openai";

const port = process.argv[2];
if (!port) {
  console.error("usage: node chat_stream.mjs PORT");
  process.exit(2);
}
const client = new OpenAI({
  baseURL: `http://127.0.0.1:${port}/v1`,
  apiKey: "sk-test",
  maxRetries: 0,
  timeout: 60_000,
});

const stream = await client.chat.completions.create({
  model: "stories260K-f32",
  messages: [
    { role: "system", content: "You are a storyteller." },
    { role: "user", content: "Tell me a story about a cat." },
  ],
  max_tokens: 48,
  temperature: 0,
  stream: true,
  stream_options: { include_usage: true },
});

let text = "";
let usage = null;
let finish = null;
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  const choice = chunk.choices?.[0];
  if (choice?.delta?.content) text += choice.delta.content;
  if (choice?.finish_reason) finish = choice.finish_reason;
}
process.stderr.write(JSON.stringify({ usage, finish }) + "\n");
process.stdout.write(text);
