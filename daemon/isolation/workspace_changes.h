// SPDX-License-Identifier: Apache-2.0
//
// Review and application of what a sandboxed agent changed in its overlay
// view of the user's workspace.
//
// The agent sees the workspace through overlayfs: lowerdir = the real
// workspace, upperdir = a directory under gvmd's state dir. Its writes land in
// upper (copy-up), its deletions are whiteouts (a 0:0 character device, or a
// zero-size file with the overlay.whiteout xattr), and a directory that
// replaced a deleted one is opaque (overlay.opaque = "y"). This module turns
// the upper tree into a list of changes (listChanges), shows one as a unified
// diff (patchFor), copies selected changes into the real workspace
// (applyChanges) and removes trees (removeTree, for discard and cleanup).
//
// Everything works relative to directory fds the daemon opened beforehand and
// never by path: each lookup goes through openat2(RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) or a single-component *at()
// call with AT_SYMLINK_NOFOLLOW / O_NOFOLLOW, so neither the agent (who wrote
// upper) nor anything planted in the workspace can make these functions
// follow a symlink or leave the trees the fds name.
//
// Who runs what (the integrator's side of the contract):
// - The overlay must be unmounted first (changing layers under a mounted
//   overlay is undefined), and mounted with redirect_dir=off,metacopy=off
//   (listChanges refuses a tree that uses either: it cannot be applied file
//   by file).
// - listChanges reads trusted.overlay.* xattrs, which needs CAP_SYS_ADMIN:
//   the daemon runs it as root on the upper dir and the workspace (it only
//   compares their contents; it reveals nothing but the list). Without the
//   capability it fails rather than miss opaque directories, unless the
//   overlay was mounted with `userxattr` (XattrNamespace::User).
// - patchFor (it shows file contents) and applyChanges (it writes) run in a
//   child that dropped to the caller's uid/gid, with the workspace fd opened
//   after the switch, so the kernel checks every access as the caller's.
//   The upper tree must be readable (and, for applyChanges, its directories
//   writable) by the caller: the agent runs as the caller's uid, so its
//   copied-up and new entries are the caller's; the upper root itself must be
//   chowned to the caller by the daemon.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace gvm::isolation {

// At most this many changes in one listing; more is an error (E2BIG).
inline constexpr size_t kMaxChanges = 100000;
// At most this many entries of the upper tree are looked at in one listing.
inline constexpr size_t kMaxEntriesVisited = 1000000;
// listChanges: a path in the upper tree has at most this many components (ELOOP
// past it). removeTree holds one fd per level down to this depth.
inline constexpr size_t kMaxDepth = 128;
// A file larger than this is shown as binary by patchFor.
inline constexpr size_t kMaxPatchBytes = 1024 * 1024;
// patchFor looks for a NUL byte in this many leading bytes to call a file
// binary (as diff and git do).
inline constexpr size_t kBinarySniffBytes = 8192;
// The line diff gives up looking for a minimal edit script past this many
// inserted + deleted lines and shows the rest of the differing region as one
// replacement (still a correct patch, just not minimal).
inline constexpr size_t kMaxDiffEdits = 1000;
// removeTree gives up (E2BIG) after this many entries.
inline constexpr size_t kMaxRemoveEntries = 10000000;

enum class ChangeKind { Created, Modified, Deleted };
enum class EntryType { File, Directory, Symlink, Other };

const char *toString(ChangeKind kind); // "created", "modified", "deleted"
const char *toString(EntryType type);  // "file", "directory", "symlink", "other"

// Which xattr namespace the overlay keeps its markers in: trusted.overlay.*
// (the default; reading them needs CAP_SYS_ADMIN) or user.overlay.* (an
// overlay mounted with `userxattr`). Only the namespace the mount actually
// used may be trusted: in trusted mode the agent can set user.overlay.opaque
// on its own directories, and honouring it would wipe workspace directories.
enum class XattrNamespace { Trusted, User };

struct Change {
	// Relative to the workspace, '/'-separated, no leading '/', no "." or
	// ".." component.
	std::string path;
	ChangeKind kind = ChangeKind::Modified;
	// Of the new entry (Created/Modified) or of the old one (Deleted).
	EntryType type = EntryType::File;
	// Modified: the type of the entry the workspace had (differs from
	// `type` when e.g. a file replaced a directory). Deleted: == type.
	// Created: == type.
	EntryType previousType = EntryType::File;
	// Permission bits (& 07777) of the new entry and of the old one (0 where
	// there is none), so a mode-only change can be shown.
	unsigned mode = 0;
	unsigned previousMode = 0;
	// Symlinks: the new target (Created/Modified) or the old one (Deleted).
	std::string linkTarget;
	// A directory that replaces whatever was at path: applying it first
	// empties the workspace's directory; its contents are listed as Created.
	bool opaqueDirectory = false;
};

// Lists what upper changes relative to lower (the workspace), sorted by path
// component by component (a directory comes right before its contents).
// Reads only below the two fds and follows no symlink. Not a change: an
// entry copied up whose type, permission bits, content (files) and target
// (symlinks) equal the workspace's, and so a directory that was only copied
// up; its changed contents are listed on their own. A whiteout of something
// the workspace does not have is not a change either. Ownership and times
// are not compared (applyChanges does not carry them over). Errors: more
// than kMaxChanges changes or kMaxEntriesVisited entries (E2BIG), a path of
// more than kMaxDepth components (ELOOP), an overlay.redirect or
// overlay.metacopy xattr (EOPNOTSUPP), XattrNamespace::Trusted without
// CAP_SYS_ADMIN (EPERM).
Result<std::vector<Change>> listChanges(int upperFd, int lowerFd,
					XattrNamespace xattrs = XattrNamespace::Trusted);

// A unified diff of oldText to newText like `diff -u` with 3 lines of
// context: "--- oldLabel\n+++ newLabel\n" then @@ hunks, "\ No newline at
// end of file" where it applies. "" when the texts are equal. Labels are
// written as given (quote them with quotePath).
std::string unifiedDiff(std::string_view oldText, std::string_view newText, std::string_view oldLabel,
			std::string_view newLabel);

// A path as diff headers show it: unchanged when it holds only printable
// ASCII other than '"' and '\\'; else C-quoted with octal escapes like git
// ("a/x\nb" -> "\"a/x\\nb\""), so a file name cannot forge diff lines.
std::string quotePath(std::string_view path);

// The unified diff of one change, with "a/PATH" / "b/PATH" labels (or
// /dev/null for the missing side of a created or deleted entry). Files are
// compared as text when neither side has a NUL in its first
// kBinarySniffBytes nor exceeds kMaxPatchBytes; else the result is "Binary
// files a/PATH and b/PATH differ\n". A symlink's content is its target; a
// directory or other entry has none, so its patch is "" (as is a change of
// permission bits only: see Change::mode); an empty file created or deleted
// shows the two header lines only. Reads upper and lower entries
// fd-relative without following symlinks; run it as the caller (it shows
// contents).
Result<std::string> patchFor(int upperFd, int lowerFd, const Change &change);

struct ApplyResult {
	// Paths applied, in the order they were applied.
	std::vector<std::string> applied;
	// (path, reason) for each selected change left unapplied, and for each
	// requested path that selects no change ("no change at this path").
	std::vector<std::pair<std::string, std::string>> refused;
};

// Applies the selected changes (all when `paths` is empty; a path selects
// the change at it and everything below it; a created directory above a
// selected change is selected too) to the workspace, in path order (a
// directory before its contents):
// - a file is copied (content + permission bits & 0777) to a temporary name
//   in its directory, then renamed into place, so a hard link in the
//   workspace is replaced, never written through;
// - a directory is created with its permission bits & 0777 (bits that deny
//   the owner something are set once all changes are done, so a read-only
//   directory can still be filled); an opaque one first has its workspace
//   contents removed;
// - a symlink is created only when its target, resolved lexically against
//   the link's directory, stays inside the workspace; else refused with
//   "symlink points outside the workspace". Its ".." components must all
//   lead the target ("../../x", not "a/../../x": `a` may itself be a link
//   of the agent's, and ".." then climbs from where it leads); others are
//   refused with a reason that says so;
// - a deletion removes the entry (a directory recursively, beneath the
//   workspace fd only);
// - an entry of another type in the way (e.g. a directory where a file goes)
//   is removed first.
// Parent directories are opened with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS), so a symlink planted in the workspace makes the
// change refused instead of redirecting a write. Once a change is applied,
// its upper entry is removed (a directory once empty), and so are upper
// directories left empty above applied changes, so listChanges no longer
// shows it. `changes` must be the whole list listChanges returned (select
// with `paths`): the tidying relies on every opaque directory being in it.
// New entries belong to the calling process's uid/gid. The
// workspace is not checked for edits made after listing: an applied change
// overwrites them. Errors only for what stops everything (an fd that is not
// a directory); per-change failures are refusals.
Result<ApplyResult> applyChanges(int upperFd, int workspaceFd, const std::vector<Change> &changes,
				 const std::vector<std::string> &paths);

// Removes `name` below parentFd, a whole directory tree or a single entry,
// without following symlinks (a symlink is removed, not its target). Depth
// is bounded without limiting the tree: a directory nested deeper than
// kMaxDepth is first moved up next to `name` under a temporary name and
// removed from there. ENOENT when name does not exist; E2BIG past
// kMaxRemoveEntries entries.
Result<void> removeTree(int parentFd, const std::string &name);

} // namespace gvm::isolation
