/**
 * Ration guard: exact per-application and per-organization token quotas for an Auth0 tenant.
 *
 * A credentials-exchange Action (Actions > Library > Build Custom > trigger "Machine to Machine").
 * Before every client-credentials exchange it asks `ration guard` to consume one token from the
 * quotas of the client (and its organization); when Ration says no, the exchange is denied with
 * the reason ("Client quota exceeded" or "Organization quota exceeded"), which the client gets as
 * 400 {"error": "invalid_request", "error_description": <reason>}.
 *
 * Secrets (Action > Secrets):
 *   RATION_URL        base URL of `ration guard`, e.g. https://ration.example.com
 *   RATION_SECRET     the guard's decision_secret (sent as a bearer token)
 *   RATION_FAIL_OPEN  "true": issue the token when Ration cannot be asked (unreachable, error);
 *                     "false" (default): deny it with server_error (Auth0 answers HTTP 500)
 *   RATION_TIMEOUT_MS optional, default 3000: how long to wait for Ration where the runtime
 *                     supports AbortSignal.timeout (Auth0's Node runtimes do)
 *
 * Only global `fetch` and async/await: it runs unchanged on Auth0 (Node 18/22) and in Ration's own
 * Actions runtime. See docs/guard.md.
 */
exports.onExecuteCredentialsExchange = async (event, api) => {
  const secrets = event.secrets || {};
  const failOpen = String(secrets.RATION_FAIL_OPEN || '').trim().toLowerCase() === 'true';
  let base = String(secrets.RATION_URL || '').trim();
  while (base.endsWith('/')) base = base.slice(0, -1);

  let decision;
  try {
    if (!base || !secrets.RATION_SECRET) {
      throw new Error('the RATION_URL and RATION_SECRET secrets must be set');
    }
    const init = {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${secrets.RATION_SECRET}`,
      },
      body: JSON.stringify({
        client_id: event.client.client_id,
        organization: event.organization?.id,
        audience: event.resource_server?.identifier,
      }),
    };
    // A slow Ration must not eat the Action's 20 s budget. Runtimes without AbortSignal.timeout
    // (Ration's) are bounded by their Action timeout instead.
    if (typeof AbortSignal !== 'undefined' && typeof AbortSignal.timeout === 'function') {
      init.signal = AbortSignal.timeout(Number(secrets.RATION_TIMEOUT_MS) || 3000);
    }
    const response = await fetch(`${base}/v1/quota/consume`, init);
    if (!response.ok) {
      throw new Error(`Ration answered HTTP ${response.status}`);
    }
    decision = await response.json();
    if (!decision || typeof decision.allow !== 'boolean') {
      throw new Error('Ration sent an unexpected answer');
    }
  } catch (err) {
    const why = err && err.message ? err.message : String(err);
    if (failOpen) {
      console.log(`Ration quota check skipped (fail open): ${why}`);
      return;
    }
    console.log(`Ration quota check failed (fail closed): ${why}`);
    // The client sees a generic reason; the details are in this Action's logs.
    api.access.deny('server_error', 'Quota service unavailable');
    return;
  }

  if (!decision.allow) {
    api.access.deny('invalid_request', decision.reason || 'Quota exceeded');
  }
};
