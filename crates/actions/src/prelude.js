// Loaded (as bytecode) into every fresh context before the Action. Its default export receives
// the Rust `host` object, keeps it in its closure (the Action can never reach it), installs
// `console` and `fetch` as globals and returns the controls the worker drives: `check`, `run`
// and `settle`. It is an ES module only because rquickjs can precompile modules.
//
// Built-ins are captured here, before any Action code runs, so an Action that replaces
// `JSON` or `Promise` breaks only its own view of them, not the bridge.
export default function prelude(host) {
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const resolved = Promise.resolve.bind(Promise);
  const rejected = Promise.reject.bind(Promise);
  const NewPromise = Promise;
  const NewMap = Map;
  const isArray = Array.isArray;
  const keys = Object.keys;
  const TypeErr = TypeError;

  const format = (value) => {
    if (typeof value === 'string') return value;
    if (value instanceof Error) return `${value.name}: ${value.message}\n${value.stack || ''}`.trimEnd();
    if (typeof value === 'function') return `[Function: ${value.name || '(anonymous)'}]`;
    if (typeof value === 'object' && value !== null) {
      try {
        const text = stringify(value);
        if (text !== undefined) return text;
      } catch (_) {
        // Cycles and BigInts: fall back to String().
      }
    }
    return String(value);
  };
  const write = (...args) => host.log(args.map(format).join(' '));
  globalThis.console = { log: write, info: write, warn: write, error: write, debug: write, trace: write };

  const pending = new NewMap();
  const fetch = (resource, init) => new NewPromise((resolve, reject) => {
    const options = init === undefined || init === null ? {} : init;
    const url = typeof resource === 'string' ? resource
      : resource !== null && typeof resource === 'object' && typeof resource.url === 'string' ? resource.url
        : String(resource);
    const method = options.method === undefined ? 'GET' : String(options.method).toUpperCase();
    const headers = [];
    const given = options.headers;
    if (given !== undefined && given !== null) {
      if (isArray(given)) {
        for (const pair of given) headers.push([String(pair[0]), String(pair[1])]);
      } else if (typeof given.forEach === 'function') {
        given.forEach((value, name) => headers.push([String(name), String(value)]));
      } else {
        for (const name of keys(given)) headers.push([name, String(given[name])]);
      }
    }
    const body = options.body === undefined || options.body === null ? undefined : String(options.body);
    // Throws a TypeError (refused host, bad URL), which rejects this promise.
    const id = host.fetch(url, method, stringify(headers), body);
    pending.set(id, { resolve, reject });
  });
  globalThis.fetch = fetch;

  const response = (r) => {
    const map = new NewMap();
    for (const [name, value] of r.headers) {
      const key = name.toLowerCase();
      map.set(key, map.has(key) ? `${map.get(key)}, ${value}` : value);
    }
    const headers = {
      get: (name) => { const v = map.get(String(name).toLowerCase()); return v === undefined ? null : v; },
      has: (name) => map.has(String(name).toLowerCase()),
      forEach: (callback, thisArg) => map.forEach((value, name) => callback.call(thisArg, value, name, headers)),
      entries: () => map.entries(),
      keys: () => map.keys(),
      values: () => map.values(),
      [Symbol.iterator]: () => map.entries(),
    };
    let used = false;
    const take = () => {
      if (used) return rejected(new TypeErr('Body is unusable: Body has already been read'));
      used = true;
      return resolved(r.body);
    };
    return {
      status: r.status,
      statusText: r.statusText,
      ok: r.status >= 200 && r.status <= 299,
      url: r.url,
      redirected: false,
      headers,
      get bodyUsed() { return used; },
      text: () => take(),
      json: () => take().then((text) => parse(text)),
    };
  };

  const settle = (id, ok, payload) => {
    const entry = pending.get(id);
    if (entry === undefined) return;
    pending.delete(id);
    if (ok) entry.resolve(response(parse(payload)));
    else entry.reject(new TypeErr(payload));
  };

  const makeApi = () => {
    const api = {
      access: {
        deny: (code, reason) => {
          host.deny(String(code), reason === undefined || reason === null ? '' : String(reason));
          return api;
        },
      },
      accessToken: {
        setCustomClaim: (name, value) => {
          host.claim(String(name), stringify(value));
          return api;
        },
      },
      cache: {
        get: (key) => {
          const record = host.cacheGet(String(key));
          return record === undefined ? undefined : parse(record);
        },
        set: (key, value, options) => parse(host.cacheSet(
          String(key),
          typeof value === 'string' ? value : undefined,
          stringify(options === undefined || options === null ? {} : options) ?? '{}',
        )),
        delete: (key) => parse(host.cacheDelete(String(key))),
      },
    };
    return api;
  };

  // Runs the CommonJS top level; `factory` is the Action wrapped as
  // function (exports, module, require) { … }.
  const load = (factory) => {
    const module = { exports: {} };
    const require = (name) => { throw new Error(`Cannot find module '${name}'`); };
    factory.call(module.exports, module.exports, module, require);
    const exported = module.exports;
    return exported === undefined || exported === null ? undefined : exported.onExecuteCredentialsExchange;
  };

  return {
    check: (factory) => typeof load(factory) === 'function',
    run: (factory, eventJson) => {
      const handler = load(factory);
      if (typeof handler !== 'function') {
        throw new TypeErr('exports.onExecuteCredentialsExchange is not a function');
      }
      return resolved(handler(parse(eventJson), makeApi()));
    },
    settle,
  };
}
