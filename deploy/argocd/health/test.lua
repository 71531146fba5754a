-- Tests of the Argo CD health scripts, run by scripts/test under Debian's lua5.1:
--   lua5.1 deploy/argocd/health/test.lua deploy/argocd/health
-- Argo CD runs a health script with the live object in the global `obj` and reads the table it
-- returns; this does the same for sample objects of every kind.
local dir = arg[1] or "."
local failures, passed = 0, 0

local function run(script, object)
  local chunk = assert(loadfile(dir .. "/" .. script))
  obj = object
  return chunk()
end

local function expect(script, name, object, want_status, want_message_part)
  local ok, hs = pcall(run, script, object)
  local problem
  if not ok then
    problem = "error: " .. tostring(hs)
  elseif type(hs) ~= "table" or hs.status ~= want_status then
    problem = "status " .. tostring(hs and hs.status) .. ", want " .. want_status
  elseif want_message_part and not string.find(hs.message or "", want_message_part, 1, true) then
    problem = "message '" .. tostring(hs.message) .. "' lacks '" .. want_message_part .. "'"
  end
  if problem then
    failures = failures + 1
    print("FAIL " .. script .. " " .. name .. ": " .. problem)
  else
    passed = passed + 1
    print("ok   " .. script .. " " .. name .. " -> " .. hs.status)
  end
end

local function condition(type_, status, reason, message)
  return { type = type_, status = status, reason = reason, message = message,
           lastTransitionTime = "2026-11-21T10:00:00Z", observedGeneration = 2 }
end

local function resource(kind, conditions, observed)
  local status = nil
  if conditions then
    status = { conditions = conditions, observedGeneration = observed or 2 }
  end
  return { apiVersion = "tailnet.ops.dev/v1alpha1", kind = kind,
           metadata = { name = "sample", generation = 2 }, status = status }
end

local in_sync = condition("Drifted", "False", "InSync", "no drift")
for _, kind in ipairs({ "ManagedTailnet", "TailnetPolicy", "DeviceTagSet", "DNSConfig" }) do
  local s = "conditions.lua"
  expect(s, kind .. " Ready", resource(kind, {
    condition("Ready", "True", "Reconciled", "applied revision 3"),
    condition("Synced", "True", "Reconciled", "in sync"), in_sync }), "Healthy", "applied revision 3")
  expect(s, kind .. " without status", resource(kind, nil), "Progressing")
  expect(s, kind .. " Progressing (generation not observed)", resource(kind, {
    condition("Ready", "True", "Reconciled", "ok"), in_sync }, 1), "Progressing", "generation 2")
  expect(s, kind .. " Progressing (Pending)", resource(kind, {
    condition("Ready", "False", "Pending", "first reconcile") }), "Progressing", "Pending")
  expect(s, kind .. " Progressing (ManagedTailnet not ready)", resource(kind, {
    condition("Ready", "False", "TailnetNotReady", "ManagedTailnet home is not Ready") }), "Progressing")
  expect(s, kind .. " Degraded (Auth)", resource(kind, {
    condition("Ready", "False", "Auth", "the API refused the credentials"),
    condition("Synced", "False", "Auth", "x"), in_sync }), "Degraded", "Auth: the API refused")
  expect(s, kind .. " Degraded (Conflict)", resource(kind, {
    condition("Ready", "False", "Conflict", "group:data defined twice") }), "Degraded", "Conflict")
  expect(s, kind .. " Drifted", resource(kind, {
    condition("Ready", "True", "Reconciled", "ok"),
    condition("Synced", "True", "Reconciled", "ok"),
    condition("Drifted", "True", "Drifted", "2 differences: /grants/0") }), "Degraded", "Drifted: 2 differences")
  expect(s, kind .. " Suspended", resource(kind, {
    condition("Ready", "True", "Reconciled", "ok"),
    condition("Synced", "False", "Suspended", "spec.suspend is true"), in_sync }), "Suspended")
end

local function proposal(phase, message)
  local status = nil
  if phase then
    status = { phase = phase, message = message }
  end
  return { apiVersion = "tailnet.ops.dev/v1alpha1", kind = "ChangeProposal",
           metadata = { name = "p", namespace = "ops", generation = 1 }, status = status }
end
local cp = "changeproposal.lua"
expect(cp, "without status", proposal(nil), "Progressing")
expect(cp, "Pending", proposal("Pending"), "Suspended", "approval")
expect(cp, "Approved", proposal("Approved"), "Progressing")
expect(cp, "Applied", proposal("Applied"), "Healthy")
expect(cp, "Failed", proposal("Failed", "policy tests failed"), "Degraded", "policy tests failed")
expect(cp, "Stale", proposal("Stale", "target changed"), "Degraded", "Stale")
expect(cp, "Rejected", proposal("Rejected", "invalid tag"), "Degraded", "Rejected")

print(string.format("Argo CD health checks: %d ok, %d failed", passed, failures))
if failures > 0 then
  os.exit(1)
end
