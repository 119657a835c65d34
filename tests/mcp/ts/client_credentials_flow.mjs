// SEP-1046 (OAuth client credentials for MCP) with the official TypeScript MCP client: its ready-made providers
// ClientCredentialsProvider (client_secret_basic: client_id = the agent id, client_secret = its API key) and
// PrivateKeyJwtProvider (private_key_jwt, RFC 7523: an EdDSA assertion signed with the agent's Ed25519 private
// JWK) connect to a third-party MCP server protected by AgentAuth. The SDK finds AgentAuth on its own: 401 ->
// RFC 9728 metadata of the server -> RFC 8414 metadata of AgentAuth (whose issuer must be the expected one) ->
// client_credentials token request with resource = the server (RFC 8707) -> retry. Then the tool call, and the
// same access token replayed at a second such server (which must answer 401).
//
// Usage: node client_credentials_flow.mjs client_secret|private_key_jwt <issuer> <mcp url> <other mcp url>
// Credentials come from the environment (never the command line): AGENT_ID, and AGENT_API_KEY or
// AGENT_PRIVATE_JWK (the JSON of the private JWK).
// Prints one JSON line {"steps", "whoami", "token", "replay", "secrets"} and exits 0, or the failed step and 1.
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ClientCredentialsProvider, PrivateKeyJwtProvider } from "@modelcontextprotocol/sdk/client/auth-extensions.js";

const [method, issuer, url, otherUrl] = process.argv.slice(2);
if (!otherUrl || !["client_secret", "private_key_jwt"].includes(method)) {
  console.error("usage: node client_credentials_flow.mjs client_secret|private_key_jwt <issuer> <mcp url> <other mcp url>");
  process.exit(2);
}
const clientId = process.env.AGENT_ID;
const steps = [];
const secrets = [];
const report = (extra) => console.log(JSON.stringify({ steps, secrets, ...extra }));

function payload(jwt) {
  return JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString());
}

function provider() {
  if (method === "client_secret") {
    secrets.push(process.env.AGENT_API_KEY);
    return new ClientCredentialsProvider({ clientId, clientSecret: process.env.AGENT_API_KEY, expectedIssuer: issuer });
  }
  const privateKey = JSON.parse(process.env.AGENT_PRIVATE_JWK);
  secrets.push(privateKey.d);
  return new PrivateKeyJwtProvider({ clientId, privateKey, algorithm: "EdDSA", expectedIssuer: issuer });
}

try {
  assert.ok(clientId, "AGENT_ID is not set");
  const auth = provider();
  const client = new Client({ name: `agentauth-ts-${method}`, version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { authProvider: auth }));
  steps.push("connect");

  const tokens = auth.tokens();
  assert.ok(tokens?.access_token, "the provider holds no access token after connecting");
  secrets.push(tokens.access_token);
  steps.push("token");

  const result = await client.callTool({ name: "whoami", arguments: {} });
  const text = result.content.filter((c) => c.type === "text").map((c) => c.text).join("\n");
  assert.ok(!result.isError, `whoami failed: ${text}`);
  const whoami = result.structuredContent?.result ?? result.structuredContent ?? JSON.parse(text);
  steps.push("whoami");
  await client.close();

  // The same token at another MCP server: an RFC 8707 audience-bound token must be refused there.
  const replayed = await fetch(otherUrl, {
    method: "POST",
    headers: {
      authorization: `Bearer ${tokens.access_token}`,
      accept: "application/json, text/event-stream",
      "content-type": "application/json",
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "replay", version: "1" } },
    }),
  });
  steps.push("replay");
  const claims = payload(tokens.access_token);
  report({
    whoami,
    token: { aud: claims.aud, sub: claims.sub, client_id: claims.client_id, scope: tokens.scope, token_type: tokens.token_type },
    replay: { status: replayed.status, www_authenticate: replayed.headers.get("www-authenticate") },
  });
} catch (error) {
  console.error(`failed after ${JSON.stringify(steps)}: ${error?.stack ?? error}`);
  report({ error: String(error) });
  process.exit(1);
}
