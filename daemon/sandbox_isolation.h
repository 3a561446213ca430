// SPDX-License-Identifier: Apache-2.0
//
// Turns a sandbox's policy (its filesystem, syscalls and limits sections, as
// the proxy worker reported them) into what confines its agent beyond the
// network: the mount view, the Landlock rules, the seccomp filter and the
// cgroup. Runs in gvmd, on its loop, just before the agent starts.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <sys/types.h>
#include <vector>

#include "common/result.h"
#include "common/json_rpc.h"
#include "policy/policy.h"

namespace gvm::isolation {
class MountViewPlan;
class LandlockPlan;
class AgentSeccompFilter;
class SandboxCgroup;
} // namespace gvm::isolation

namespace gvm::daemon {

// Bounds on the scan of the workspace for hidden name patterns (".env*").
inline constexpr size_t kMaxHiddenScanEntries = 50000;
inline constexpr int kMaxHiddenScanDepth = 12;

// The policy's isolation sections, read back from the worker's
// worker.configure answer ("isolation").
struct IsolationPolicy {
	policy::FilesystemPolicy filesystem;
	policy::SyscallPolicy syscalls;
	policy::ResourceLimits limits;
};
Result<IsolationPolicy> parseIsolationPolicy(const rpc::Json &json);

struct IsolationRequest {
	std::string id;
	std::string workspace; // absolute
	uid_t uid = 0;
	gid_t gid = 0;
	std::string sandboxDir; // gvmd's runtime directory for this sandbox
	std::string stateDir;   // gvmd's state directory: stateDir/sandboxes/<id>
	// gvmd's own directories and socket, hidden from every layer.
	std::vector<std::string> gvmdHidden;
	// Tests of the second layer: no masking mounts, so that Landlock alone
	// must keep the hidden paths closed.
	bool maskMounts = true;
	IsolationPolicy policy;
};

struct PreparedIsolation {
	std::shared_ptr<const isolation::MountViewPlan> view;
	std::shared_ptr<const isolation::LandlockPlan> landlock;
	std::shared_ptr<const isolation::AgentSeccompFilter> seccomp;
	std::unique_ptr<isolation::SandboxCgroup> cgroup;
	// The overlay's upper layer, kept after the sandbox ends until the
	// user applies or discards it ("" when the workspace is not an
	// overlay).
	std::string upperDir;
};

// Builds the seccomp filter once per set of relaxed groups.
class SeccompFilters
{
public:
	Result<std::shared_ptr<const isolation::AgentSeccompFilter>> get(policy::SyscallPolicy policy);

private:
	std::map<uint32_t, std::shared_ptr<const isolation::AgentSeccompFilter>> filters_;
};

// Prepares everything; on failure nothing it made is left behind (the
// cgroup is removed, the state directory of the sandbox too).
Result<PreparedIsolation> prepareIsolation(const IsolationRequest &request, SeccompFilters &filters);

// The sandbox's directory under the state directory, which holds its
// overlay layers and record (stateDir/sandboxes/<id>).
std::string sandboxStateDir(const std::string &stateDir, const std::string &id);

// Why `path` cannot be a sandbox's workspace ("" when it can): the root, the
// kernel's and gvmd's own trees, and paths overlayfs cannot take.
std::string workspaceProblem(const std::string &path);

// Why the agent could not start in `cwd` ("" when it can): a directory in
// /tmp or /dev/shm, which the sandbox replaces with private ones, outside
// the workspace (which is carried into the private /tmp).
std::string workingDirectoryProblem(const std::string &cwd, const std::string &workspace);

} // namespace gvm::daemon
