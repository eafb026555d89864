#!/usr/bin/env node
// Generates generated/typescript/src/messages.ts from generated/schemas/*.json
// (one JSON Schema per message) and asyncapi.yaml (which messages the client
// sends and which the server sends), with json-schema-to-typescript.
//
//   node tools/generate-typescript.mjs            writes generated/typescript/src/messages.ts
//   node tools/generate-typescript.mjs --stdout   prints it instead
//
// All message schemas are compiled as one combined schema whose $defs hold the
// shared definitions (identical in every file; a conflict is an error) and one
// entry per message, so each shared type is declared once. Everything is
// sorted, so the output is deterministic and a staleness check can diff it.
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual } from "node:util";
import { compile } from "json-schema-to-typescript";
import { parse } from "yaml";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const schemaDir = join(root, "generated", "schemas");
const outFile = join(root, "generated", "typescript", "src", "messages.ts");
const HEADER = "// Generated from asyncapi.yaml by tools/generate-typescript.mjs; do not edit.";

function fail(message) {
  console.error(`generate-typescript: ${message}`);
  process.exit(1);
}

// --- asyncapi.yaml: which messages belong to which union -------------------
const spec = parse(readFileSync(join(root, "asyncapi.yaml"), "utf8"));

function resolveRef(ref) {
  if (!ref.startsWith("#/")) fail(`only local $refs are supported: ${ref}`);
  let node = spec;
  for (const raw of ref.slice(2).split("/")) {
    const key = raw.replaceAll("~1", "/").replaceAll("~0", "~");
    node = node?.[key];
    if (node === undefined) fail(`unresolved $ref ${ref}`);
  }
  return node;
}

// Follows an operation's message $ref (usually #/channels/X/messages/y, itself
// a $ref to #/components/messages/Name) to the component message's key.
function componentMessageName(ref) {
  let current = ref;
  for (let depth = 0; depth < 10; depth++) {
    const m = /^#\/components\/messages\/([^/]+)$/.exec(current);
    if (m) return m[1];
    const node = resolveRef(current);
    if (!node.$ref) fail(`message ${current} is not a $ref to #/components/messages`);
    current = node.$ref;
  }
  fail(`$ref chain too long from ${ref}`);
}

// One pair of unions per channel that names them in x-tickgate-unions
// (v1: V1ClientFrame/V1ServerFrame, candles: CandlesClientFrame/...); the
// messages of other channels become plain types.
const unions = {}; // channel key -> { client: {name, members}, server: {name, members} }
for (const [key, channel] of Object.entries(spec.channels ?? {})) {
  const names = channel["x-tickgate-unions"];
  if (!names) continue;
  unions[key] = {
    client: { name: names.client, members: new Set() },
    server: { name: names.server, members: new Set() },
  };
}
const used = new Set();
for (const [name, op] of Object.entries(spec.operations ?? {})) {
  // The gateway receives what a client sends, and sends what a client receives.
  const side = op.action === "receive" ? "client" : op.action === "send" ? "server" : null;
  if (!side) fail(`operation ${name} has unknown action ${op.action}`);
  const channel = /^#\/channels\/([^/]+)$/.exec(op.channel?.$ref ?? "")?.[1];
  if (!channel) fail(`operation ${name} names no channel`);
  for (const message of op.messages ?? []) {
    const component = componentMessageName(message.$ref);
    used.add(component);
    unions[channel]?.[side].members.add(component);
  }
}

// --- generated/schemas/*.json: one combined schema --------------------------
const files = readdirSync(schemaDir).filter((f) => f.endsWith(".json")).sort();
if (files.length === 0) fail(`no schemas in ${schemaDir}`);
const sharedDefs = {};
const messageDefs = {};
for (const file of files) {
  const schema = JSON.parse(readFileSync(join(schemaDir, file), "utf8"));
  const { $defs = {}, $schema, $comment, ...message } = schema;
  const title = message.title;
  if (!title) fail(`${file} has no title`);
  if (messageDefs[title]) fail(`two schemas are titled ${title}`);
  for (const [key, def] of Object.entries($defs)) {
    if (key in sharedDefs && !isDeepStrictEqual(sharedDefs[key], def)) {
      fail(`$defs/${key} differs between schemas (seen again in ${file})`);
    }
    sharedDefs[key] = def;
  }
  messageDefs[title] = message;
}
for (const title of Object.keys(messageDefs)) {
  if (title in sharedDefs) fail(`message ${title} clashes with a shared $defs entry`);
}
for (const name of used) {
  if (!messageDefs[name]) fail(`asyncapi.yaml names message ${name}, which has no schema in generated/schemas`);
}
const unassigned = Object.keys(messageDefs).filter((t) => !used.has(t));
if (unassigned.length) fail(`schemas used by no operation: ${unassigned.join(", ")}`);

const sorted = (obj) => Object.fromEntries(Object.keys(obj).sort().map((k) => [k, obj[k]]));
const unionDefs = {};
const unionNames = [];
for (const [channel, sides] of Object.entries(unions).sort()) {
  for (const side of ["client", "server"]) {
    const { name, members } = sides[side];
    unionDefs[name] = {
      title: name,
      description: `Every frame the ${side === "client" ? "client sends" : "server sends"} on the ${channel} channel (asyncapi.yaml operations with action ${side === "client" ? "receive" : "send"}).`,
      anyOf: [...members].sort().map((m) => ({ $ref: `#/$defs/${m}` })),
    };
    unionNames.push(name);
  }
}
// Messages of channels without unions (the quotes stream's Quote) join
// AnyFrame directly, so their types are emitted too.
const inUnions = new Set(Object.values(unions).flatMap((s) => [...s.client.members, ...s.server.members]));
const loose = [...used].filter((m) => !inUnions.has(m)).sort();
const combined = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  title: "AnyFrame",
  description: "Any frame of any tickgate WebSocket dialect.",
  anyOf: [...unionNames, ...loose].map((name) => ({ $ref: `#/$defs/${name}` })),
  $defs: {
    ...sorted(sharedDefs),
    ...sorted(messageDefs),
    ...unionDefs,
  },
};

const ts = await compile(combined, "AnyFrame", {
  bannerComment: HEADER,
  additionalProperties: false,
  declareExternallyReferenced: true,
  unreachableDefinitions: true,
  strictIndexSignatures: true,
  format: true,
  style: { printWidth: 100, singleQuote: false, semi: true, trailingComma: "all" },
  $refOptions: { resolve: { external: false } },
});

if (!ts.startsWith(HEADER + "\n")) fail("unexpected output header");
if (process.argv.includes("--stdout")) {
  process.stdout.write(ts);
} else {
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, ts);
  console.error(`wrote ${outFile}`);
}
