-- Argo CD health of a ChangeProposal, from status.phase:
--   Progressing: not checked yet, or Approved (being applied);
--   Suspended:   Pending (waiting for a human to set spec.approved);
--   Healthy:     Applied;
--   Degraded:    Failed, Stale (the target changed: propose again) or Rejected (invalid patch).
local message = (obj.status and obj.status.message) or ""
local phase = obj.status and obj.status.phase
if phase == nil then
  return { status = "Progressing", message = "Waiting for the operator to check the proposal" }
end
if phase == "Pending" then
  return { status = "Suspended", message = "Waiting for approval (spec.approved: true)" }
end
if phase == "Approved" then
  return { status = "Progressing", message = "Approved; being applied" }
end
if phase == "Applied" then
  return { status = "Healthy", message = "Applied" }
end
if phase == "Failed" or phase == "Stale" or phase == "Rejected" then
  return { status = "Degraded", message = phase .. ": " .. message }
end
return { status = "Unknown", message = "Unknown phase " .. tostring(phase) }
