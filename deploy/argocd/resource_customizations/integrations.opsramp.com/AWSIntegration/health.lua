-- Argo CD health check for integrations.opsramp.com/AWSIntegration (Lua 5.1, as gopher-lua runs it).
-- Healthy: Ready=True for the current generation. Degraded: Stalled=True, or Ready=False for a reason a person
-- must fix (with managementPolicy Observe: AWS or OpsRamp differs from the spec, DriftDetected). Suspended:
-- spec.suspend, or monitoring disabled by spec.monitoring.enabled. Progressing: everything else, with the
-- operator's message.
local hs = {}

-- Reasons that will not clear by retrying: the operator waits for a person to change something. The operator
-- also sets Stalled=True for these; the list covers a Ready=False written without Stalled.
local needsPerson = {
  InvalidSpec = true,
  NotOwned = true,
  AccountMismatch = true,
  OpsRampAuthFailed = true,
  OpsRampRejected = true,
  AwsAccessDenied = true,
  Conflict = true,
  SecretNotFound = true,
  CredentialsSecretNotFound = true,
  CredentialsSecretInvalid = true,
  ExternalIdSecretNotFound = true,
  ExternalIdSecretInvalid = true,
  ExternalIdInvalid = true,
  DisplayNameInUse = true,
  ExternalIdSourceUnset = true,
  LinkedAccountsUnsupported = true,
  LinkedAccountsUnconfirmed = true,
  OpsRampCannotIdentify = true,
  RolePathChanged = true,
  UnknownRegion = true,
  KubernetesForbidden = true,
  KubernetesRejected = true,
  AdoptionRefused = true,
  RoleNotAllowed = true,
  RoleNotFound = true,
  RoleTrustInvalid = true,
  RolePermissionsMissing = true,
  ExternalIdRotationFailed = true,
  DriftDetected = true,
}

-- Aws* reasons that clear by themselves: "Aws" + the AWS error codes the operator retries (throttling,
-- service errors, concurrent changes), and its own network and timeout reasons. Every other Aws* reason is
-- an AWS error code that needs a person (AccessDenied, NoSuchEntity, MalformedPolicyDocument, ...).
local awsTransient = {
  AwsThrottling = true,
  AwsThrottlingException = true,
  AwsThrottledException = true,
  AwsRequestThrottledException = true,
  AwsTooManyRequestsException = true,
  AwsRequestLimitExceeded = true,
  AwsRequestThrottled = true,
  AwsSlowDown = true,
  AwsPriorRequestNotComplete = true,
  AwsServiceFailure = true,
  AwsServiceUnavailable = true,
  AwsServiceUnavailableException = true,
  AwsInternalFailure = true,
  AwsInternalError = true,
  AwsConcurrentModification = true,
  AwsIDPCommunicationError = true,
  AwsRequestTimeout = true,
  AwsRequestTimeoutException = true,
  AwsEntityAlreadyExists = true,
  AwsTimeout = true,
  AwsConnectionError = true,
  AwsClientError = true,
}

local function isPersonReason(reason)
  if reason == nil then
    return false
  end
  if needsPerson[reason] then
    return true
  end
  if string.sub(reason, 1, 3) == "Aws" and not awsTransient[reason] then
    return true
  end
  return false
end

local function describe(condition, fallback)
  if condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  if condition.reason ~= nil and condition.reason ~= "" then
    return condition.reason
  end
  return fallback
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Reconciliation is suspended (spec.suspend is true)"
  return hs
end

if obj.spec ~= nil and obj.spec.monitoring ~= nil and obj.spec.monitoring.enabled == false then
  hs.status = "Suspended"
  hs.message = "Monitoring is disabled (spec.monitoring.enabled is false)"
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

local ready = nil
local stalled = nil
local statusGeneration = nil
if obj.status ~= nil then
  statusGeneration = obj.status.observedGeneration
  if obj.status.conditions ~= nil then
    for _, condition in ipairs(obj.status.conditions) do
      if condition.type == "Ready" then
        ready = condition
      elseif condition.type == "Stalled" then
        stalled = condition
      end
    end
  end
end

-- The generation a condition speaks for: its own observedGeneration, else status.observedGeneration.
local function observedOf(condition)
  if condition.observedGeneration ~= nil then
    return condition.observedGeneration
  end
  return statusGeneration
end

-- Whether a condition may describe the current spec (unknown counts as yes: better a message than none).
local function isCurrent(condition)
  local observed = observedOf(condition)
  if observed == nil or generation == nil then
    return true
  end
  return observed == generation
end

-- Healthy needs proof: a known observed generation equal to metadata.generation.
local function provesCurrent(condition)
  if generation == nil then
    return true
  end
  return observedOf(condition) == generation
end

if stalled ~= nil and stalled.status == "True" and isCurrent(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

if ready ~= nil and isCurrent(ready) then
  if ready.status == "True" and provesCurrent(ready) then
    hs.status = "Healthy"
    hs.message = describe(ready, "Ready")
    return hs
  end
  if ready.status == "False" and isPersonReason(ready.reason) then
    hs.status = "Degraded"
    hs.message = describe(ready, "Not ready")
    return hs
  end
end

hs.status = "Progressing"
if ready ~= nil and isCurrent(ready) then
  hs.message = describe(ready, "Waiting for the operator to reconcile")
elseif generation ~= nil then
  hs.message = "Waiting for the operator to reconcile generation " .. tostring(generation)
else
  hs.message = "Waiting for the operator to reconcile"
end
return hs
