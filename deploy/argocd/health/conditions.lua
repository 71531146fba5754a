-- Argo CD health of a tailnet.ops.dev resource that reports Ready / Synced / Drifted
-- conditions (every kind but ChangeProposal).
--   Progressing: not reconciled yet, the spec's generation not observed yet, or waiting
--                (Pending, its ManagedTailnet not Ready yet, a FunnelExposure setting up);
--   Suspended:   spec.suspend (Synced=False, reason Suspended);
--   Degraded:    Ready=False for any other reason (Auth, Invalid, Conflict, ...), or
--                Drifted=True (the live tailnet differs from the desired state);
--   Healthy:     Ready=True and not drifted.
local hs = { status = "Progressing", message = "Waiting for the operator to reconcile" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
local found = {}
for _, condition in ipairs(obj.status.conditions) do
  found[condition.type] = condition
end
local ready, synced, drifted = found["Ready"], found["Synced"], found["Drifted"]
if synced ~= nil and synced.status == "False" and synced.reason == "Suspended" then
  return { status = "Suspended", message = synced.message or "spec.suspend is true" }
end
if drifted ~= nil and drifted.status == "True" then
  return { status = "Degraded", message = "Drifted: " .. (drifted.message or "the live tailnet differs") }
end
if ready == nil then
  return hs
end
if ready.status == "True" then
  return { status = "Healthy", message = ready.message or "Ready" }
end
-- FunnelExposure: AwaitingPolicy / AwaitingDevice while its proxy is set up.
local waiting = { Pending = true, TailnetNotReady = true, Reconciling = true,
  AwaitingPolicy = true, AwaitingDevice = true }
if ready.status ~= "False" or waiting[ready.reason] then
  hs.message = (ready.reason or "Unknown") .. ": " .. (ready.message or "")
  return hs
end
return { status = "Degraded", message = (ready.reason or "NotReady") .. ": " .. (ready.message or "") }
