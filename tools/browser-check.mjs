// Loads the gateway's three documentation pages in headless Chromium and
// fails on any console error, uncaught page error or failed request (the
// pages must work offline), or when a page does not show what it documents.
// Usage: node tools/browser-check.mjs BASE_URL SCREENSHOT_DIR
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const [base, outDir] = process.argv.slice(2);
if (!base || !outDir) {
  console.error('usage: node tools/browser-check.mjs BASE_URL SCREENSHOT_DIR');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

const pages = [
  // The rendered AsyncAPI document: its title, the endpoint and operations.
  { name: 'asyncapi', path: '/api/v1/asyncapi', expect: ['tickgate WebSocket API', '/api/v1/ws/v1', 'market_data', 'notifications', 'Subscribe'] },
  // Swagger UI: operations of every tag.
  { name: 'swagger-ui', path: '/api/v1/docs', expect: ['tickgate REST API', '/datafeed/history', '/ws/config', '/health'] },
  // ReDoc: operation summaries.
  { name: 'redoc', path: '/api/v1/redoc', expect: ['tickgate REST API', 'WebSocket statistics', 'Symbol search'] },
];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let failures = 0;
try {
  for (const spec of pages) {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const problems = [];
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('response', (response) => {
      if (response.status() >= 400) problems.push(`HTTP ${response.status()}: ${response.url()}`);
    });
    page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()} (${request.failure()?.errorText})`));
    const response = await page.goto(base + spec.path, { waitUntil: 'networkidle', timeout: 60_000 });
    if (!response || response.status() !== 200) problems.push(`status ${response?.status()}`);
    for (const text of spec.expect) {
      try {
        await page.getByText(text, { exact: false }).first().waitFor({ state: 'attached', timeout: 20_000 });
      } catch {
        problems.push(`does not show "${text}"`);
      }
    }
    const screenshot = `${outDir}/${spec.name}.png`;
    await page.screenshot({ path: screenshot, fullPage: false });
    if (problems.length > 0) {
      failures += 1;
      console.error(`FAIL ${spec.path}\n  ${problems.join('\n  ')}`);
    } else {
      console.log(`ok   ${spec.path} (${spec.expect.length} expected texts; screenshot ${screenshot})`);
    }
    await page.close();
  }
} finally {
  await browser.close();
}
console.log(`browser-check: ${pages.length - failures} passed, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
