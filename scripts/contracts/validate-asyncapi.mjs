// Validates an AsyncAPI document with the official parser (@asyncapi/parser): the AsyncAPI
// JSON Schema, reference resolution, payload schemas and the spec's semantic rules.
// Usage: node validate-asyncapi.mjs <file>; exits 1 on any error or warning.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(process.env.CONTRACT_TOOLS_NODE_MODULES + '/');
const { Parser, DiagnosticSeverity } = require('@asyncapi/parser');

const file = process.argv[2];
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(file, 'utf8'), { source: file });
const serious = diagnostics.filter((d) => d.severity <= DiagnosticSeverity.Warning);
for (const d of diagnostics) {
  const level = ['error', 'warning', 'info', 'hint'][d.severity];
  console.log(`${file}: ${level}: ${d.message} at ${d.path.join('/') || '(root)'} [${d.code}]`);
}
if (!document || serious.length > 0) {
  console.log(`${file}: not valid AsyncAPI (${serious.length} errors or warnings)`);
  process.exit(1);
}
const channels = document.channels().all().map((c) => c.address());
console.log(`${file}: valid AsyncAPI ${document.version()}: ${channels.length} channels (${channels.join(', ')}), ${document.messages().all().length} messages`);
