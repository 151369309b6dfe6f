import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

package enum FileSystemError: Error, Sendable, CustomStringConvertible {
    case failed(path: String, action: String, errno: Int32)
    case unsafeDirectory(path: String, reason: String, fix: String)

    package var description: String {
        switch self {
        case .failed(let path, let action, let code):
            return "cannot \(action) \(path): \(String(cString: strerror(code)))"
        case .unsafeDirectory(let path, let reason, let fix):
            return "cannot keep sockets in \(path): it \(reason); \(fix)"
        }
    }
}

/// File operations with the modes fwd promises: directories 0700, state files 0600, atomic replacement.
package enum FileSystem {
    /// Creates `path` and its missing parents as 0700 directories. A directory that exists keeps its mode:
    /// fwd never re-modes a directory it did not create (with the config in `$HOME`, that would be `$HOME`).
    package static func makePrivateDirectory(_ path: String) throws(FileSystemError) {
        var components: [String] = []
        var current = path
        while !current.isEmpty, current != "/", !exists(current) {
            components.insert(current, at: 0)
            current = (current as NSString).deletingLastPathComponent
        }
        for dir in components {
            if mkdir(dir, 0o700) == 0 {
                // Ours, just made: the umask may have taken bits a directory of ours needs (u+rwx).
                if chmod(dir, 0o700) != 0 { throw .failed(path: dir, action: "set mode 0700 on", errno: errno) }
            } else if errno != EEXIST {
                throw .failed(path: dir, action: "create directory", errno: errno)
            }
        }
    }

    /// A real directory (not a symlink) of this user's that no one else can enter.
    package static func isPrivateDirectory(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR && st.st_uid == geteuid() && st.st_mode & 0o077 == 0
    }

    /// The directory of fwd's sockets, made if missing (with its missing parents, 0700), then checked: it must
    /// be a real directory of this user's with mode 0700, in a parent that no other user can rename it out of.
    /// Plain ssh trusts whatever answers at a ControlPath (docs/architecture.md, "Where the sockets live"), so a
    /// directory that fails is not used, not repaired: fwd did not make it, and a fix names what the user can do.
    package static func makeSocketDirectory(_ path: String) throws(FileSystemError) {
        let parent = (path as NSString).deletingLastPathComponent
        if !exists(path) {
            if let tooLong = lengthProblem(path) { throw tooLong }
            try makePrivateDirectory(parent)
            if mkdir(path, 0o700) == 0 {
                if chmod(path, 0o700) != 0 { throw .failed(path: path, action: "set mode 0700 on", errno: errno) }
            } else if errno != EEXIST {
                throw .failed(path: path, action: "create directory", errno: errno)
            }
        }
        if let problem = socketDirectoryProblem(path) { throw problem }
    }

    /// A directory too long for even a hashed socket name (`FwdPaths.controlSocket`) in it.
    private static func lengthProblem(_ path: String) -> FileSystemError? {
        let longest = path.utf8.count + 1 + FwdPaths.hashedNameLength
        guard longest > FwdPaths.controlPathLimit else { return nil }
        return .unsafeDirectory(path: path, reason: "is too long: a ControlPath in it needs \(longest) bytes, and a socket address holds \(FwdPaths.controlPathLimit)",
                                fix: "set FWD_RUNTIME_DIR to a shorter directory only you can enter")
    }

    /// Why `path` may not hold fwd's sockets, with a fix; nil when it may.
    package static func socketDirectoryProblem(_ path: String) -> FileSystemError? {
        if let tooLong = lengthProblem(path) { return tooLong }
        let moveAside = "move it aside (`mv \(path) \(path).old`) or set FWD_RUNTIME_DIR to a directory only you can enter"
        var st = stat()
        guard lstat(path, &st) == 0 else { return .failed(path: path, action: "inspect", errno: errno) }
        guard st.st_mode & S_IFMT == S_IFDIR else { return .unsafeDirectory(path: path, reason: "is not a directory", fix: moveAside) }
        guard st.st_uid == geteuid() else {
            return .unsafeDirectory(path: path, reason: "belongs to uid \(st.st_uid), who could answer in place of your ssh masters", fix: moveAside)
        }
        guard st.st_mode & 0o077 == 0 else {
            return .unsafeDirectory(path: path, reason: "has mode \(String(st.st_mode & 0o7777, radix: 8)), so other users can enter it",
                                    fix: "`chmod 700 \(path)` if it is yours to change, or \(moveAside)")
        }
        // Each directory above must be one that only this user or root can change; others may write a sticky
        // directory (/tmp) without being able to rename what is ours in it.
        var ancestor = (path as NSString).deletingLastPathComponent
        while !ancestor.isEmpty {
            var up = stat()
            guard stat(ancestor, &up) == 0 else { return .failed(path: ancestor, action: "inspect", errno: errno) }
            if (up.st_uid != geteuid() && up.st_uid != 0) || (up.st_mode & 0o022 != 0 && up.st_mode & S_ISVTX == 0) {
                return .unsafeDirectory(path: path, reason: "is inside \(ancestor), which another user can change (and so replace it)",
                                        fix: "set FWD_RUNTIME_DIR (or FWD_STATE_DIR) to a directory only you can change")
            }
            if ancestor == "/" { break }
            ancestor = (ancestor as NSString).deletingLastPathComponent
        }
        return nil
    }

    /// Writes `contents` to a temporary file beside `path` with `mode`, flushes it, then renames it over
    /// `path`: a crash leaves the old file or the new one, never a torn one.
    package static func writeAtomically(_ contents: String, to path: String, mode: mode_t = 0o600) throws(FileSystemError) {
        try writeAtomically(Array(contents.utf8), to: path, mode: mode)
    }

    package static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600) throws(FileSystemError) {
        let dir = (path as NSString).deletingLastPathComponent
        // Unique per write, not just per process: two writes of one file at once must not share a temporary.
        let temp = "\(dir)/.\((path as NSString).lastPathComponent).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw .failed(path: temp, action: "create", errno: errno) }
        if let failure = writeAndFlush(bytes, to: fd, path: temp, mode: mode) {
            close(fd)
            unlink(temp)
            throw failure
        }
        close(fd)
        if rename(temp, path) != 0 {
            let code = errno
            unlink(temp)
            throw .failed(path: path, action: "replace", errno: code)
        }
        removeAbandonedTemporaries(of: path)
    }

    /// Temporaries of `path` left by a writer that was killed between create and rename (`.NAME.PID.N.tmp`
    /// whose PID no longer runs). Ones of live processes may be in flight and stay.
    static func removeAbandonedTemporaries(of path: String) {
        let dir = (path as NSString).deletingLastPathComponent
        let prefix = ".\((path as NSString).lastPathComponent)."
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
        for entry in entries where entry.hasPrefix(prefix) && entry.hasSuffix(".tmp") {
            let fields = entry.dropFirst(prefix.count).dropLast(4).split(separator: ".")
            guard fields.count == 2, let pid = Int32(fields[0]), pid > 0, UInt32(fields[1]) != nil else { continue }
            if !ProcessTable.isAlive(pid) { unlink("\(dir)/\(entry)") }
        }
    }

    /// Creates `path` with `bytes` only if nothing is there (O_EXCL, so two writers never share a name);
    /// false when the name is taken.
    package static func createNew(_ bytes: [UInt8], at path: String, mode: mode_t) throws(FileSystemError) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        if fd < 0 {
            if errno == EEXIST { return false }
            throw .failed(path: path, action: "create", errno: errno)
        }
        defer { close(fd) }
        if let failure = writeAndFlush(bytes, to: fd, path: path, mode: mode) {
            unlink(path)
            throw failure
        }
        return true
    }

    /// Writes all of `bytes` to `fd`, sets `mode` and flushes; the error, naming `path`, when one step fails.
    private static func writeAndFlush(_ bytes: [UInt8], to fd: Int32, path: String, mode: mode_t) -> FileSystemError? {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failed(path: path, action: "write", errno: errno)
            }
            offset += n
        }
        fchmod(fd, mode)
        return fsync(fd) == 0 ? nil : .failed(path: path, action: "flush", errno: errno)
    }

    /// The file's bytes, as they are (no text decoding); nil when it cannot be read.
    package static func readBytes(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path).map { Array($0) }
    }

    package static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    package static func read(_ path: String) -> String? {
        try? String(contentsOfFile: path, encoding: .utf8)
    }

    /// What tells one version of a file from another without reading it: device, inode, size and change
    /// time (nil when there is no file).
    package struct Identity: Equatable, Sendable {
        var device: UInt64, inode: UInt64, size: Int64, changed: Int
    }

    package static func identity(_ path: String) -> Identity? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        #if canImport(Darwin)
        let changed = Int(st.st_ctimespec.tv_sec) * 1_000_000_000 + Int(st.st_ctimespec.tv_nsec)
        #else
        let changed = Int(st.st_ctim.tv_sec) * 1_000_000_000 + Int(st.st_ctim.tv_nsec)
        #endif
        return Identity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: Int64(st.st_size), changed: changed)
    }

    package static func mode(of path: String) -> mode_t? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return st.st_mode & 0o7777
    }
}
