// The product document's flow across two organisations with the official TypeScript MCP client, the same steps
// as two_tenant_flow in tests/mcp/mcp_support.py: quickstart twice (two tenants) -> create_delegation from the
// first agent to the second -> check_permission for the delegate (allowed for the delegated scope, denied for
// another) -> refresh_token -> revoke_token -> introspect_token answers active false.
//
// Usage: node two_tenant_flow.mjs http://127.0.0.1:PORT/mcp
// Prints one JSON line {"steps": [...], "secrets": [...]} and exits 0, or prints the failed step and exits 1.
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const url = process.argv[2];
if (!url) {
  console.error("usage: node two_tenant_flow.mjs <mcp url>");
  process.exit(2);
}
const steps = [];
const secrets = [];

const client = new Client({ name: "agentauth-ts-flow", version: "1.0.0" });
await client.connect(new StreamableHTTPClientTransport(new URL(url)));

async function call(tool, args) {
  const result = await client.callTool({ name: tool, arguments: args });
  const text = result.content.filter((c) => c.type === "text").map((c) => c.text).join("\n");
  assert.ok(!result.isError, `${tool} failed: ${text}`);
  assert.equal(typeof result.structuredContent, "object", `${tool}: no structuredContent`);
  steps.push(tool);
  return { data: result.structuredContent, content: result.content };
}

function keep(answer) {
  for (const name of ["access_token", "refresh_token", "api_key", "raw_key"]) {
    if (typeof answer[name] === "string") secrets.push(answer[name]);
  }
  if (answer.private_key_jwk?.d) secrets.push(answer.private_key_jwk.d);
  return answer;
}

try {
  const first = await call("quickstart", { name: "ts lender", agent_type: "orchestrator" });
  const lender = keep(first.data);
  // The secret the answer hands out comes first (the document reads it as content[0].text).
  assert.equal(first.content[0].text, lender.api_key);
  const borrower = keep((await call("quickstart", { name: "ts borrower", agent_type: "assistant" })).data);
  assert.notEqual(lender.agent.tenant_id, borrower.agent.tenant_id);
  const token = lender.access_token;

  const delegation = (
    await call("create_delegation", {
      delegate_agent_id: borrower.agent.id,
      scopes: ["api.write"],
      access_token: token,
    })
  ).data;
  assert.equal(delegation.delegator_agent_id, lender.agent.id);
  assert.equal(delegation.delegate_agent_id, borrower.agent.id);
  assert.deepEqual(delegation.scopes, ["api.write"]);
  assert.equal(delegation.status, "active");

  const ask = (action) =>
    call("check_permission", { agent_id: borrower.agent.id, action, resource: "files/q3.pdf", access_token: token });
  const allowed = (await ask("write")).data;
  assert.equal(allowed.allowed, true, JSON.stringify(allowed));
  assert.equal(allowed.basis, "delegation");
  assert.equal(allowed.delegation_id, delegation.id);
  const denied = (await ask("admin")).data;
  assert.equal(denied.allowed, false, JSON.stringify(denied));
  assert.equal(denied.effect, "deny");

  const refreshedAnswer = await call("refresh_token", { refresh_token_value: lender.refresh_token });
  const refreshed = keep(refreshedAnswer.data);
  assert.equal(refreshedAnswer.content[0].text, refreshed.access_token);
  assert.notEqual(refreshed.access_token, token);
  assert.notEqual(refreshed.refresh_token, lender.refresh_token);
  assert.equal((await call("introspect_token", { token: refreshed.access_token })).data.active, true);
  assert.equal((await call("revoke_token", { token: refreshed.access_token })).data.success, true);
  assert.deepEqual((await call("introspect_token", { token: refreshed.access_token })).data, { active: false });
} catch (error) {
  console.log(JSON.stringify({ steps, secrets }));
  console.error(`step ${steps.length + 1} failed: ${error.message}`);
  await client.close();
  process.exit(1);
}
console.log(JSON.stringify({ steps, secrets }));
await client.close();
