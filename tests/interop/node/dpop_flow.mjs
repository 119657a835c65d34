// RFC 9449 DPoP with a third-party OAuth client library: panva's oauth4webapi, on Node 22's WebCrypto, against a
// real AgentAuth server and third-party resource servers protected by agentauth.sdk
// (tests/sdk/test_dpop_oauth4webapi.py starts them all and checks this script's report).
//
// Usage:
//   node dpop_flow.mjs resource <issuer> <resource server> <nonce resource server>
//     discovery -> client_credentials (client_secret_post, resource = the resource server) with a DPoP proof ->
//     GET <resource server>/read with a proof (ath) -> the same token without a proof, with a replayed proof,
//     with proofs of the wrong htu / htm / ath / an old iat, and with a proof by another key -> a token for the
//     nonce resource server, called until oauth4webapi's nonce retry has passed, and once more.
//   node dpop_flow.mjs token-nonce <issuer>
//     against a server with AGENTAUTH_DPOP_NONCE_REQUIRED=true: client_credentials (client_secret_basic) until
//     oauth4webapi's nonce retry issues a DPoP token, which then reads the agent at AgentAuth's own API
//     (GET /api/v1/agents/<id>) with a proof carrying the nonce.
// Credentials come from the environment, never the command line: AGENT_ID (the client_id) and AGENT_API_KEY.
//
// Every request goes through a recording fetch (oauth4webapi's customFetch). The report, one JSON line on stdout,
// lists each exchange with its label, the Authorization scheme and DPoP proof sent, and the status,
// WWW-Authenticate, DPoP-Nonce and JSON body received, plus what oauth4webapi made of each call (its status, or
// the error it threw and the challenges it parsed); the test judges them all. Exit 0, or 1 with the failed step.
// Proofs are built by oauth4webapi's DPoP handle only: the wrong ones through its documented modifyAssertion
// hook (the claims changed right before signing), the replay by resending the exact DPoP header of a success.
import assert from "node:assert/strict";
import * as oauth from "oauth4webapi";

const [mode, issuerArg, resourceArg, nonceResourceArg] = process.argv.slice(2);
if (!(mode === "resource" && nonceResourceArg) && !(mode === "token-nonce" && issuerArg)) {
  console.error("usage: node dpop_flow.mjs resource <issuer> <resource> <nonce resource> | token-nonce <issuer>");
  process.exit(2);
}

const steps = [];
const exchanges = [];
const outcomes = {};
let label = "";

async function recordingFetch(url, init) {
  const response = await fetch(url, init);
  const sent = new Headers(init?.headers);
  const json = (response.headers.get("content-type") ?? "").startsWith("application/json");
  exchanges.push({
    label,
    method: init?.method ?? "GET",
    url: String(url),
    authorization_scheme: sent.get("authorization")?.split(" ")[0] ?? null,
    dpop: sent.get("dpop"),
    status: response.status,
    www_authenticate: response.headers.get("www-authenticate"),
    dpop_nonce: response.headers.get("dpop-nonce"),
    body: json ? await response.clone().json() : null,
  });
  return response;
}

// The servers are on http://127.0.0.1: oauth4webapi refuses plain http unless told.
const options = (extra = {}) => ({
  [oauth.allowInsecureRequests]: true,
  [oauth.customFetch]: recordingFetch,
  ...extra,
});

function newKeyPair() {
  // Ed25519 in WebCrypto (oauth4webapi signs with it as alg "Ed25519"); the private key cannot be exported.
  return crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
}

async function sha256(text) {
  return Buffer.from(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text))).toString("base64url");
}

async function discover(issuer) {
  label = "discovery";
  const response = await oauth.discoveryRequest(issuer, options({ algorithm: "oauth2" })); // RFC 8414
  const as = await oauth.processDiscoveryResponse(issuer, response);
  steps.push("discovery");
  return as;
}

async function clientCredentials(as, client, auth, parameters, dpop) {
  const response = await oauth.clientCredentialsGrantRequest(as, client, auth, parameters, options({ DPoP: dpop }));
  return oauth.processClientCredentialsResponse(as, client, response);
}

// One protected resource request, GET with oauth4webapi (a proof by ``dpop`` when given, else as it is: a bearer
// token, or a DPoP header given in ``headers``). oauth4webapi throws on a WWW-Authenticate challenge: what it
// parsed goes into the report next to the raw exchange, and the script goes on.
async function get(name, url, token, { dpop, headers } = {}) {
  label = name;
  try {
    const extra = dpop ? { DPoP: dpop } : {};
    const response = await oauth.protectedResourceRequest(token, "GET", url, headers, undefined, options(extra));
    outcomes[name] = { thrown: null, status: response.status };
  } catch (err) {
    if (!(err instanceof oauth.WWWAuthenticateChallengeError)) throw err;
    const nonceError = oauth.isDPoPNonceError(err);
    outcomes[name] = { thrown: err.name, status: err.status, challenges: err.cause, is_dpop_nonce_error: nonceError };
  }
  steps.push(name);
}

async function resourceFlow(issuer, clientId, apiKey) {
  const as = await discover(issuer);
  const client = { client_id: clientId };
  const keyPair = await newKeyPair();
  const dpop = oauth.DPoP(client, keyPair);
  const read = new URL("/read", resourceArg);

  label = "token";
  const auth = oauth.ClientSecretPost(apiKey); // client_id = the agent id, client_secret = its API key
  const tokens = await clientCredentials(as, client, auth, new URLSearchParams({ resource: resourceArg }), dpop);
  assert.equal(tokens.token_type, "dpop", "the token endpoint did not issue a DPoP token");
  steps.push("token");
  const token = tokens.access_token;

  await get("read", read, token, { dpop });
  assert.equal(outcomes.read.status, 200, "GET /read with the token and its proof was refused");
  const used = exchanges.at(-1).dpop;

  // The same token without a proof: as a bearer token (oauth4webapi without its DPoP handle), and with the DPoP
  // scheme but no DPoP header (oauth4webapi never sends that, so plain fetch does).
  await get("bearer", read, token);
  label = "dpop_without_proof";
  const bare = await recordingFetch(read.href, { method: "GET", headers: { authorization: `DPoP ${token}` } });
  outcomes.dpop_without_proof = { thrown: null, status: bare.status };
  steps.push("dpop_without_proof");
  // The exact proof of the successful call, again (with a DPoP header given, oauth4webapi sends the DPoP scheme).
  await get("replayed", read, token, { headers: { dpop: used } });
  const wrongAth = await sha256(`${token}.other`);
  const tampered = {
    wrong_htu: (claims) => { claims.htu = new URL("/elsewhere", resourceArg).href; },
    wrong_htm: (claims) => { claims.htm = "POST"; },
    wrong_ath: (claims) => { claims.ath = wrongAth; },
    old_iat: (claims) => { claims.iat -= 600; },
  };
  for (const [name, change] of Object.entries(tampered)) {
    const handle = oauth.DPoP(client, keyPair, { [oauth.modifyAssertion]: (_header, claims) => change(claims) });
    await get(name, read, token, { dpop: handle });
  }
  await get("other_key", read, token, { dpop: oauth.DPoP(client, await newKeyPair()) });

  // A resource server requiring nonces (RFC 9449 section 9), and oauth4webapi's documented retry: the handle has
  // cached the DPoP-Nonce of the refusal (isDPoPNonceError), the same call again carries it.
  label = "nonce_token";
  const nonceParameters = new URLSearchParams({ resource: nonceResourceArg });
  const nonceToken = (await clientCredentials(as, client, auth, nonceParameters, dpop)).access_token;
  steps.push("nonce_token");
  const nonceRead = new URL("/read", nonceResourceArg);
  await get("nonce_first", nonceRead, nonceToken, { dpop });
  if (outcomes.nonce_first.is_dpop_nonce_error) {
    await get("nonce_retry", nonceRead, nonceToken, { dpop });
  }
  await get("nonce_again", nonceRead, nonceToken, { dpop }); // with the nonce of the 200 (section 8.2)
  return { token_type: tokens.token_type, access_token: token, nonce_access_token: nonceToken };
}

async function tokenNonceFlow(issuer, clientId, apiKey) {
  const as = await discover(issuer);
  const client = { client_id: clientId };
  const dpop = oauth.DPoP(client, await newKeyPair());
  const auth = oauth.ClientSecretBasic(apiKey);

  label = "token_first";
  let tokens;
  try {
    tokens = await clientCredentials(as, client, auth, new URLSearchParams(), dpop);
    outcomes.token_first = { thrown: null };
  } catch (err) {
    // oauth4webapi's documented pattern: a use_dpop_nonce error body, the nonce already cached by the handle.
    if (!oauth.isDPoPNonceError(err)) throw err;
    outcomes.token_first = { thrown: err.name, status: err.status, error: err.error, is_dpop_nonce_error: true };
  }
  steps.push("token_first");
  if (tokens === undefined) {
    label = "token_retry";
    tokens = await clientCredentials(as, client, auth, new URLSearchParams(), dpop);
    steps.push("token_retry");
  }
  assert.equal(tokens.token_type, "dpop", "the token endpoint did not issue a DPoP token");

  await get("own_api", new URL(`/api/v1/agents/${clientId}`, issuer), tokens.access_token, { dpop });
  return { token_type: tokens.token_type, access_token: tokens.access_token };
}

try {
  const clientId = process.env.AGENT_ID;
  const apiKey = process.env.AGENT_API_KEY;
  assert.ok(clientId && apiKey, "AGENT_ID and AGENT_API_KEY must be set");
  const flow = mode === "resource" ? resourceFlow : tokenNonceFlow;
  const result = await flow(new URL(issuerArg), clientId, apiKey);
  console.log(JSON.stringify({ mode, steps, exchanges, outcomes, ...result }));
} catch (err) {
  const error = `${err?.name}: ${err?.message}`;
  console.log(JSON.stringify({ mode, steps, exchanges, outcomes, failed: label, error, code: err?.code }));
  process.exit(1);
}
