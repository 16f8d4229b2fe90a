// openai-check: the official openai SDK (node) as a real client of routerd.
// Run by tests/sdk/run.sh, which starts two fakebe backends and routerd in front of them.
// maxRetries is 0 everywhere: the SDK's own retries would hide a request routerd lost.
import OpenAI from 'openai';

const base = process.env.BASE;			// routerd, http://127.0.0.1:PORT/v1
const be = [process.env.BE1, process.env.BE2];	// the fakebe control URLs
const pid = [+process.env.BE1_PID, +process.env.BE2_PID];
const client = new OpenAI({ baseURL: base, apiKey: 'sk-test', maxRetries: 0, timeout: 20000 });
const msgs = [{ role: 'user', content: 'hi' }];
let failed = 0;

function check(ok, what) {
	console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
	if (!ok) failed++;
}

// Run n tasks, at most par at a time; returns their results (Error objects for failures).
async function pool(n, par, task) {
	const out = new Array(n);
	let next = 0;
	async function lane() {
		while (next < n) {
			const i = next++;
			try { out[i] = await task(i); } catch (e) { out[i] = e instanceof Error ? e : new Error(String(e)); }
		}
	}
	await Promise.all(Array.from({ length: par }, lane));
	return out;
}

function errs(results) {
	const e = results.filter((r) => r instanceof Error);
	return e.length ? ` (${e.length} failed, first: ${e[0].status ?? ''} ${e[0].message})` : '';
}

async function chat() {
	const { data, response } = await client.chat.completions
		.create({ model: 'demo-model', messages: msgs })
		.withResponse();
	if (!/^Hello from /.test(data.choices[0].message.content))
		throw new Error(`content ${JSON.stringify(data.choices[0].message.content)}`);
	return response.headers.get('x-backend');
}

async function stream(delayMs, tokens, opts = {}) {
	const t0 = Date.now();
	const s = await client.chat.completions.create(
		{ model: 'demo-model', messages: msgs, stream: true, max_tokens: tokens, ...opts },
		{ headers: { 'X-Fake-Delay-Ms': String(delayMs) } });
	let text = '', first = -1, usage = null, finish = null;
	for await (const chunk of s) {
		if (first < 0) first = Date.now() - t0;
		if (chunk.usage) usage = chunk.usage;
		for (const c of chunk.choices) {
			text += c.delta?.content ?? '';
			if (c.finish_reason) finish = c.finish_reason;
		}
	}
	return { text, first, total: Date.now() - t0, usage, finish };
}

async function fault(i, mode) {
	const r = await fetch(`${be[i]}/__fault?mode=${mode}`, { method: 'POST' });
	if (!r.ok) throw new Error(`fault ${mode}: ${r.status}`);
}

// 1. the model list comes through
const models = await client.models.list();
check(models.data.some((m) => m.id === 'demo-model'), `models.list: ${models.data.map((m) => m.id).join(',')}`);

// 2. 400 chats, 20 at a time, spread over both backends
let r = await pool(400, 20, chat);
const seen = {};
for (const b of r) if (typeof b === 'string') seen[b] = (seen[b] ?? 0) + 1;
check(!r.some((x) => x instanceof Error) && Object.keys(seen).length === 2,
	`400 chat completions, 20 concurrent: ${JSON.stringify(seen)}${errs(r)}`);

// 3. streams: every token, in order, the first long before the last
r = await pool(40, 10, () => stream(60, 5));
const good = r.filter((x) => !(x instanceof Error) && /^Hello from demo-\d again again$/.test(x.text) && x.finish);
const early = good.filter((x) => x.first < x.total - 150);
check(good.length === 40 && early.length === 40,
	`40 streams, 10 concurrent, 60 ms a token: ${good.length} whole, ${early.length} with the first chunk >150 ms before the end${errs(r)}`);
const u = await stream(5, 3, { stream_options: { include_usage: true } });
check(u.usage && u.usage.completion_tokens === 3, `stream usage chunk: ${JSON.stringify(u.usage)}`);

// 3b. the same streams through a routerd whose pool runs the llm strategy: a shared
// system prompt, every stream whole, and all of one prompt on one backend (affinity)
if (process.env.BASE_LLM) {
	const llm = new OpenAI({ baseURL: process.env.BASE_LLM, apiKey: 'sk-test', maxRetries: 0, timeout: 20000 });
	const sys = 'You are the routerd check. '.repeat(60);
	const lr = await pool(20, 5, async (i) => {
		const { data: s, response } = await llm.chat.completions.create(
			{ model: 'demo-model', stream: true, max_tokens: 4,
			  messages: [{ role: 'system', content: sys }, { role: 'user', content: `question ${i}` }] },
			{ headers: { 'X-Fake-Delay-Ms': '10' } }).withResponse();
		let text = '', finish = null;
		for await (const chunk of s) {
			for (const c of chunk.choices) {
				text += c.delta?.content ?? '';
				if (c.finish_reason) finish = c.finish_reason;
			}
		}
		return { text, finish, be: response.headers.get('x-backend') };
	});
	const whole = lr.filter((x) => !(x instanceof Error) && /^Hello from demo-\d( again)+$/.test(x.text) && x.finish);
	const bes = new Set(whole.map((x) => x.be));
	check(whole.length === 20 && bes.size >= 1,
		`llm strategy: 20 streams of one shared prompt, 5 concurrent: ${whole.length} whole, on ${[...bes].join(',')}${errs(lr)}`);
	const seq = [];
	for (let i = 0; i < 6; i++) {
		const { response } = await llm.chat.completions.create(
			{ model: 'demo-model', max_tokens: 1,
			  messages: [{ role: 'system', content: sys }, { role: 'user', content: `again ${i}` }] }).withResponse();
		seq.push(response.headers.get('x-backend'));
	}
	check(new Set(seq).size === 1, `llm strategy: one at a time, a shared prompt stays on one backend: ${seq.join(',')}`);
	// the llm pool holds each stream's head until its first event: a backend that
	// drops every connection is retried on the other, and the SDK never sees it
	// routerd's count of failed attempts at demo-1, from its admin /metrics
	const fails1 = async () => (await (await fetch(`${process.env.ADMIN_LLM}/metrics`)).text())
		.split('\n').filter((l) => l.startsWith('routerd_backend_failures_total{') && l.includes('backend="demo-1"'))
		.reduce((a, l) => a + Number(l.split(' ').pop()), 0);
	const f0 = await fails1();
	await fault(0, 'close');
	const hr = await pool(20, 5, async (i) => {
		const s = await llm.chat.completions.create(
			{ model: 'demo-model', stream: true, max_tokens: 4,
			  messages: [{ role: 'user', content: `held ${i} ${'x'.repeat(i * 37)}` }] });
		let text = '', finish = null;
		for await (const chunk of s)
			for (const c of chunk.choices) {
				text += c.delta?.content ?? '';
				if (c.finish_reason) finish = c.finish_reason;
			}
		return { text, finish };
	});
	const hwhole = hr.filter((x) => !(x instanceof Error) && /^Hello from demo-2( again)+$/.test(x.text) && x.finish);
	const dropped = await fails1() - f0;
	check(hwhole.length === 20 && dropped > 0,
		`llm strategy: 20 streams while demo-1 drops every connection: ${hwhole.length} whole from demo-2, ` +
		`${dropped} attempts dropped at demo-1 and retried unseen${errs(hr)}`);
	await fault(0, 'none');
}

// 4. the other endpoints
const comp = await client.completions.create({ model: 'demo-model', prompt: 'hi' });
check(/^Hello from /.test(comp.choices[0].text), `completions: ${JSON.stringify(comp.choices[0].text)}`);
const emb = await client.embeddings.create({ model: 'demo-model', input: ['a', 'b'], dimensions: 4 });
// fakebe's vector i, component k is ((i + 1) * (k + 3)) % 17 / 17, sent as base64 float32s
const e0 = emb.data[0]?.embedding ?? [];
check(emb.data.length === 2 && e0.length === 4 && Math.abs(e0[0] - 3 / 17) < 1e-6 &&
	Math.abs(emb.data[1].embedding[3] - 12 / 17) < 1e-6,
	`embeddings: ${emb.data.length} x ${e0.length}, [0][0] = ${e0[0]}`);

// 5. errors arrive as OpenAI errors the SDK can read
try {
	await client.chat.completions.create({ model: 'no-such-model', messages: msgs });
	check(false, 'unknown model: answered 200');
} catch (e) {
	check(e.status === 404 && typeof e.message === 'string' && e.message.length > 0,
		`unknown model: ${e.status} ${e.constructor.name}: ${e.message}`);
}

// 6. a backend that takes requests and drops the connection unanswered.  A POST the
// backend received may have run, so routerd does not replay it (DESIGN "Retries"):
// the SDK gets routerd's 502, until the circuit breaker (10 failures) takes the
// backend out (the prober reads the counters every 10 ms); after that no request fails.
await fault(0, 'close');
r = await pool(300, 20, chat);
const bad = r.filter((x) => x instanceof Error);
const clean = bad.every((e) => e.status === 502 && /backend/.test(e.message));
const lastBad = r.map((x) => x instanceof Error).lastIndexOf(true);
check(bad.length > 0 && bad.length <= 50 && clean && lastBad < 150,
	`300 chats while demo-1 drops every connection: ${bad.length} answered 502 by routerd` +
	` (${clean ? 'all' : 'NOT all'} OpenAI-style errors), the last at request ${lastBad + 1}, then none` +
	(clean ? '' : errs(r)));
await fault(0, 'none');

// 7. a backend killed under load: the requests it held may fail (it had them), with
// routerd's 502; every request started after its death is served by demo-2
let killedAt = 0;
r = await pool(1000, 20, (i) => {
	if (i === 300) {			// before request 300 is sent
		process.kill(pid[0], 'SIGKILL');
		killedAt = Date.now();
	}
	return chat();
});
const lost = r.map((x, i) => [x, i]).filter(([x]) => x instanceof Error);
const after = lost.filter(([, i]) => i >= 300);
const ok502 = lost.every(([e]) => e.status === 502);
check(killedAt > 0 && after.length === 0 && ok502 && lost.length <= 20,
	`1000 chats, 20 concurrent, demo-1 killed before request 300: ${lost.length} in flight on it` +
	` answered 502, ${after.length} sent after the kill failed` + (ok502 ? '' : errs(r)));

// 8. a stream cut by its backend must fail, not end as if complete: some chunks arrive,
// then the SDK raises a connection error (not an HTTP error: the answer had begun).
// The same cut through the llm pool ends with routerd's error event, which the SDK
// raises as an APIError with code upstream_stream_broken.
async function cut(c) {
	let got = 0;
	try {
		const s = await c.chat.completions.create(
			{ model: 'demo-model', messages: msgs, stream: true, max_tokens: 30 },
			{ headers: { 'X-Fake-Delay-Ms': '300' } });
		for await (const chunk of s)
			got += chunk.choices.length;
		return { got, e: null };
	} catch (e) {
		return { got, e };
	}
}
setTimeout(() => process.kill(pid[1], 'SIGKILL'), 1000);
const llmc = process.env.BASE_LLM ?
	new OpenAI({ baseURL: process.env.BASE_LLM, apiKey: 'sk-test', maxRetries: 0, timeout: 20000 }) : null;
const [c1, c2] = await Promise.all([cut(client), llmc ? cut(llmc) : null]);
if (c1.e === null)
	check(false, `stream cut by kill -9 of its backend ended cleanly after ${c1.got} chunks`);
else
	check(c1.got >= 1 && c1.e.status === undefined,
		`stream cut by kill -9 of its backend: ${c1.got} chunks, then the SDK raised ${c1.e.constructor.name}: ${c1.e.message}`);
if (c2 !== null) {
	const code = c2.e?.code ?? c2.e?.error?.code;
	check(c2.e !== null && c2.got >= 1 && code === 'upstream_stream_broken',
		`llm strategy: the same cut: ${c2.got} chunks, then the SDK raised ` +
		(c2.e ? `${c2.e.constructor.name} (code ${code}): ${c2.e.message}` : 'nothing: it ended cleanly'));
}

console.log(failed ? `openai-check: ${failed} FAILED` : 'openai-check: all passed');
process.exit(failed ? 1 : 0);
