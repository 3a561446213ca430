// SPDX-License-Identifier: Apache-2.0
#include "daemon/workspace_review.h"

#include <cerrno>
#include <csignal>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/file.h"
#include "common/unique_fd.h"
#include "daemon/isolation/workspace_changes.h"
#include "daemon/sandbox_isolation.h"

namespace gvm::daemon {

namespace {

constexpr char kRecordName[] = "sandbox.json";

Result<void> writeAll(int fd, const std::string &text, const std::string &what)
{
	size_t done = 0;
	while (done < text.size()) {
		ssize_t n = ::write(fd, text.data() + done, text.size() - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(Error::fromErrno(errno, "writing " + what));
		done += static_cast<size_t>(n);
	}
	return {};
}

// In the review child: becomes the reviewer for file access. `keepRoot`
// keeps uid 0 (and CAP_SYS_ADMIN, to read overlayfs's trusted.* markers)
// while every file is opened with the reviewer's file-system ids, which
// also drops the capabilities that override file permissions.
bool becomeReviewer(const Reviewer &reviewer, bool keepRoot)
{
	if (::setgroups(reviewer.groups.size(), reviewer.groups.data()) < 0)
		return false;
	if (keepRoot) {
		::setfsgid(reviewer.gid);
		::setfsuid(reviewer.uid);
		return static_cast<uid_t>(::setfsuid(static_cast<uid_t>(-1))) == reviewer.uid;
	}
	return ::setresgid(reviewer.gid, reviewer.gid, reviewer.gid) == 0 &&
	       ::setresuid(reviewer.uid, reviewer.uid, reviewer.uid) == 0;
}

rpc::Json describe(const isolation::Change &c)
{
	rpc::Json out = {{"path", c.path}, {"kind", isolation::toString(c.kind)}, {"type", isolation::toString(c.type)}};
	if (c.type == isolation::EntryType::Symlink)
		out["target"] = c.linkTarget;
	return out;
}

// Runs `work` in a child process and returns what it printed (a JSON
// document) or the error it reported ({"error": "..."}).
template <typename Work>
Result<rpc::Json> inChild(const std::string &what, Work work)
{
	int fds[2];
	if (::pipe2(fds, O_CLOEXEC) < 0)
		return fail(Error::fromErrno(errno, what));
	UniqueFd readEnd(fds[0]), writeEnd(fds[1]);
	const pid_t pid = ::fork();
	if (pid < 0)
		return fail(Error::fromErrno(errno, what));
	if (pid == 0) {
		readEnd.reset();
		::signal(SIGPIPE, SIG_DFL);
		Result<rpc::Json> result = work();
		rpc::Json out = result ? *result : rpc::Json{{"error", result.error().message()}};
		const bool ok = static_cast<bool>(writeAll(writeEnd.get(), out.dump(-1, ' ', false, rpc::Json::error_handler_t::replace), "the result"));
		::_exit(ok ? 0 : 1);
	}
	writeEnd.reset();
	std::string text;
	char buffer[65536];
	for (;;) {
		ssize_t n = ::read(readEnd.get(), buffer, sizeof(buffer));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (text.size() + static_cast<size_t>(n) > kMaxReviewOutputBytes) {
			::kill(pid, SIGKILL);
			break;
		}
		text.append(buffer, static_cast<size_t>(n));
	}
	int status = 0;
	while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return fail(Error::internal(what + ": the review process failed" +
					    (text.size() >= kMaxReviewOutputBytes ? " (its output is too large)" : "")));
	rpc::Json json = rpc::Json::parse(text, nullptr, false);
	if (json.is_discarded())
		return fail(Error::internal(what + ": the review process sent no result"));
	if (json.is_object() && json.contains("error"))
		return fail(Error(ErrorDomain::Rpc, rpc::kServerError, json["error"].get<std::string>()));
	return json;
}

Result<UniqueFd> openDirectory(const std::string &path)
{
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
	if (!fd)
		return fail(Error::fromErrno(errno, "opening " + path));
	return fd;
}

} // namespace

rpc::Json SandboxRecord::toJson() const
{
	return {{"id", id},
		{"name", name},
		{"uid", static_cast<int64_t>(uid)},
		{"gid", static_cast<int64_t>(gid)},
		{"workspace", workspace},
		{"command", command},
		{"started", started},
		{"ended", ended}};
}

Result<void> writeSandboxRecord(const std::string &stateDir, const SandboxRecord &record)
{
	const std::string dir = sandboxStateDir(stateDir, record.id);
	const std::string path = dir + "/" + kRecordName;
	const std::string temporary = path + ".new";
	{
		UniqueFd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
		if (!fd)
			return fail(Error::fromErrno(errno, "creating " + temporary));
		GVM_TRY_VOID(writeAll(fd.get(), record.toJson().dump() + "\n", temporary), "recording the sandbox");
	}
	if (::rename(temporary.c_str(), path.c_str()) < 0)
		return fail(Error::fromErrno(errno, "renaming " + temporary));
	return {};
}

Result<SandboxRecord> readSandboxRecord(const std::string &stateDir, const std::string &id)
{
	const std::string path = sandboxStateDir(stateDir, id) + "/" + kRecordName;
	auto text = readFileBounded(path, 1024 * 1024);
	if (!text)
		return fail(std::move(text).error());
	rpc::Json json = rpc::Json::parse(*text, nullptr, false);
	if (json.is_discarded() || !json.is_object())
		return fail(Error::internal(path + " is not a sandbox record"));
	SandboxRecord record;
	record.id = json.value("id", "");
	record.name = json.value("name", "");
	record.uid = json.value("uid", static_cast<uid_t>(-1));
	record.gid = json.value("gid", static_cast<gid_t>(-1));
	record.workspace = json.value("workspace", "");
	record.command = json.value("command", std::vector<std::string>());
	record.started = json.value("started", "");
	record.ended = json.value("ended", false);
	if (record.id != id || record.workspace.empty() || record.uid == static_cast<uid_t>(-1))
		return fail(Error::internal(path + " is not a sandbox record"));
	return record;
}

std::vector<SandboxRecord> listSandboxRecords(const std::string &stateDir)
{
	std::vector<SandboxRecord> out;
	const std::string dir = stateDir + "/sandboxes";
	DIR *stream = ::opendir(dir.c_str());
	if (!stream)
		return out;
	while (dirent *entry = ::readdir(stream)) {
		const std::string name = entry->d_name;
		if (name == "." || name == "..")
			continue;
		if (auto record = readSandboxRecord(stateDir, name))
			out.push_back(std::move(*record));
	}
	::closedir(stream);
	return out;
}

bool hasPendingChanges(const std::string &stateDir, const std::string &id)
{
	const std::string upper = sandboxStateDir(stateDir, id) + "/upper";
	DIR *stream = ::opendir(upper.c_str());
	if (!stream)
		return false;
	bool any = false;
	while (dirent *entry = ::readdir(stream)) {
		const std::string name = entry->d_name;
		if (name != "." && name != "..") {
			any = true;
			break;
		}
	}
	::closedir(stream);
	return any;
}

Result<rpc::Json> listWorkspaceChanges(const std::string &stateDir, const SandboxRecord &record,
				       const Reviewer &reviewer, bool withPatch)
{
	auto upper = openDirectory(sandboxStateDir(stateDir, record.id) + "/upper");
	if (!upper)
		return fail(std::move(upper).error().wrap("reading the changes of sandbox " + record.id));
	return inChild("reading the changes of sandbox " + record.id, [&]() -> Result<rpc::Json> {
		if (!becomeReviewer(reviewer, true))
			return fail(Error::fromErrno(errno, "switching to uid " + std::to_string(reviewer.uid)));
		auto lower = openDirectory(record.workspace);
		if (!lower)
			return fail(std::move(lower).error());
		auto changes = isolation::listChanges(upper->get(), lower->get());
		if (!changes)
			return fail(std::move(changes).error());
		rpc::Json list = rpc::Json::array();
		std::string patch;
		for (const isolation::Change &c : *changes) {
			list.push_back(describe(c));
			if (withPatch) {
				auto p = isolation::patchFor(upper->get(), lower->get(), c);
				if (!p)
					return fail(std::move(p).error().wrap("diffing " + c.path));
				patch += *p;
			}
		}
		rpc::Json out = {{"changes", std::move(list)}};
		if (withPatch)
			out["patch"] = std::move(patch);
		return out;
	});
}

Result<rpc::Json> applyWorkspaceChanges(const std::string &stateDir, const SandboxRecord &record,
					const Reviewer &reviewer, const std::vector<std::string> &paths)
{
	auto upper = openDirectory(sandboxStateDir(stateDir, record.id) + "/upper");
	if (!upper)
		return fail(std::move(upper).error().wrap("applying the changes of sandbox " + record.id));
	return inChild("applying the changes of sandbox " + record.id, [&]() -> Result<rpc::Json> {
		// Listing reads overlayfs's trusted.* markers (root's);
		// applying is the caller's alone: root is dropped for good
		// before the first write.
		if (!becomeReviewer(reviewer, true))
			return fail(Error::fromErrno(errno, "switching to uid " + std::to_string(reviewer.uid)));
		auto lower = openDirectory(record.workspace);
		if (!lower)
			return fail(std::move(lower).error());
		auto changes = isolation::listChanges(upper->get(), lower->get());
		if (!changes)
			return fail(std::move(changes).error());
		if (!becomeReviewer(reviewer, false))
			return fail(Error::fromErrno(errno, "switching to uid " + std::to_string(reviewer.uid)));
		auto applied = isolation::applyChanges(upper->get(), lower->get(), *changes, paths);
		if (!applied)
			return fail(std::move(applied).error());
		rpc::Json refused = rpc::Json::array();
		for (const auto &[path, reason] : applied->refused)
			refused.push_back({{"path", path}, {"reason", reason}});
		return rpc::Json{{"applied", applied->applied}, {"refused", std::move(refused)}};
	});
}

Result<void> discardWorkspaceChanges(const std::string &stateDir, const std::string &id)
{
	auto parent = openDirectory(stateDir + "/sandboxes");
	if (!parent)
		return fail(std::move(parent).error());
	if (auto r = isolation::removeTree(parent->get(), id); !r && r.error().code() != ENOENT)
		return fail(std::move(r).error().wrap("discarding sandbox " + id));
	return {};
}

} // namespace gvm::daemon
