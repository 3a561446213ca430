// SPDX-License-Identifier: Apache-2.0
//
// The file system a sandboxed agent sees: the host read-only, its workspace
// writable through an overlay (or directly, or not at all), an ephemeral
// writable home, the user's secrets replaced by empty unreadable mounts,
// private /tmp and /dev/shm, a minimal /dev with a private devpts, and a
// fresh /proc.
//
// MountViewPlan is prepared by gvmd before it clones the sandbox (it owns
// every string); applyMountView() runs in the sandbox's init, after the
// clone of a multithreaded gvmd, so it only makes system calls: it never
// allocates, never takes a lock.
#pragma once

#include <cstddef>
#include <string>
#include <sys/types.h>
#include <vector>

#include "policy/policy.h"

namespace gvm::isolation {

// What applyMountView() needs, as plain pointers into a MountViewPlan.
struct MountViewSpec {
	const char *workspace = nullptr; // absolute, or null for none
	policy::WorkspaceMode workspaceMode = policy::WorkspaceMode::Overlay;
	const char *workspaceUpper = nullptr; // for Overlay: upperdir and workdir,
	const char *workspaceWork = nullptr;  // on one file system, upper owned by the caller
	const char *workspaceOptions = nullptr; // overlayfs mount options
	// The workspace is below /tmp: its mount (with the masks on it) is
	// carried over onto the private /tmp.
	bool workspaceInTmp = false;
	const char *home = nullptr;           // the caller's home, or null
	const char *homeScratch = nullptr;    // an empty directory for the home's tmpfs layer
	const char *homeUpper = nullptr;      // homeScratch/upper and /work
	const char *homeWork = nullptr;
	const char *homeOptions = nullptr;
	// Hidden paths in the home: whiteouts in its upper layer, so they do
	// not exist in the agent's home at all, below directories that are
	// created in the upper layer first (with the lower ones' owner and
	// mode), parents before children.
	struct UpperDir {
		const char *path;
		mode_t mode;
		uid_t uid;
		gid_t gid;
	};
	const UpperDir *homeUpperDirs = nullptr;
	size_t homeUpperDirCount = 0;
	const char *const *homeWhiteouts = nullptr;
	size_t homeWhiteoutCount = 0;
	uid_t uid = 0;
	gid_t gid = 0;
	mode_t homeMode = 0755;
	const char *const *maskDirs = nullptr; // become an empty mode-000 tmpfs
	size_t maskDirCount = 0;
	const char *const *maskFiles = nullptr; // become `emptyFile` (mode 000)
	size_t maskFileCount = 0;
	const char *emptyFile = nullptr;
};

// Where applyMountView() failed: the step and the path it was working on.
struct MountViewFailure {
	enum class Step {
		Workspace,
		Home,
		Mask,
		Tmp,
		Dev,
		ReadOnly,
	} step;
	int err;
	const char *path;
};
const char *describe(MountViewFailure::Step step); // "mounting the workspace overlay on"...

// Owns the strings a MountViewSpec points into.
class MountViewPlan
{
public:
	struct Input {
		std::string workspace; // "" for none
		policy::WorkspaceMode workspaceMode = policy::WorkspaceMode::Overlay;
		std::string workspaceUpper;
		std::string workspaceWork;
		std::string home;
		std::string homeScratch;
		uid_t uid = 0;
		gid_t gid = 0;
		mode_t homeMode = 0755;
		// Paths in the home, relative to it ("a/b"), to hide with
		// whiteouts in the home's layer.
		std::vector<std::string> homeWhiteouts;
		std::vector<std::string> maskDirs;
		std::vector<std::string> maskFiles;
		std::string emptyFile;
	};
	explicit MountViewPlan(Input input);
	MountViewPlan(const MountViewPlan &) = delete;
	MountViewPlan &operator=(const MountViewPlan &) = delete;

	const MountViewSpec &spec() const { return spec_; }
	const Input &input() const { return input_; }

private:
	Input input_;
	std::vector<const char *> maskDirs_;
	std::vector<const char *> maskFiles_;
	std::string workspaceOptions_;
	std::string homeUpper_;
	std::string homeWork_;
	std::string homeOptions_;
	std::vector<std::string> upperDirPaths_;
	std::vector<MountViewSpec::UpperDir> upperDirs_;
	std::vector<std::string> whiteoutPaths_;
	std::vector<const char *> whiteouts_;
	MountViewSpec spec_;
};

// Whether overlayfs can take `path` as a layer in its mount options (no
// ',', ':' or '\\').
bool overlayPathUsable(const std::string &path);

// In the sandbox's init (root, in its own mount namespace whose mounts are
// already slaves of the host's), in two steps around the init's other
// mounts (CA bundle, resolv.conf, gvmd's hidden directories, /proc):
//
// mountLayers() mounts the workspace overlay (or a writable bind of it), the
// home's overlay and the masks over hidden paths; their sources (the
// sandbox's directory under gvmd's runtime directory) must still be
// reachable, so it runs first.
//
// sealMountView() mounts private /tmp, /dev and /dev/shm, then makes every
// mount read-only except the writable ones: it runs last.
//
// Both return true, or false with *failure set. Mounts made before a
// failure stay; the namespace dies with the init anyway.
bool mountLayers(const MountViewSpec &spec, MountViewFailure *failure) noexcept;
bool sealMountView(const MountViewSpec &spec, MountViewFailure *failure) noexcept;

} // namespace gvm::isolation
