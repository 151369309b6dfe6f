import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A log another process appends to through an `O_APPEND` descriptor (a master's stderr, STATE/logs/HOST.log),
/// kept at most about `cap` bytes with one older generation beside it (`NAME.1`), and read from its end only
/// (docs/reliability.md, "Per-host ssh logs"). Files are 0600.
package enum LogFile {
    /// A degraded forward makes its master write a line per probe, about 5 MB a day: a MiB is days of lines.
    package static let cap: UInt64 = 1 << 20
    /// The most of a log read at once: plenty for the last run's lines that say why ssh exited.
    package static let tailLimit = 64 << 10

    /// Before a new writer opens `path`: a log over `cap` becomes `path.1`, replacing the older generation.
    package static func rotateIfFull(_ path: String, cap: UInt64 = cap) {
        guard let size = size(of: path), size > cap else { return }
        rename(path, path + ".1")
    }

    /// While a writer holds `path` open: a log over `cap` is copied to `path.1` and truncated to nothing in
    /// place. The writer cannot be made to reopen it (ssh holds the descriptor), so renaming would leave it
    /// writing to `path.1` for ever; with `O_APPEND` its next write lands at the new end, offset 0, where a plain
    /// descriptor would leave a hole. Lines written between the copy and the truncation are lost. Returns
    /// whether it truncated.
    @discardableResult
    package static func truncateIfFull(_ path: String, cap: UInt64 = cap) -> Bool {
        guard let size = size(of: path), size > cap else { return false }
        let source = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard source >= 0 else { return false }
        defer { close(source) }
        let old = path + ".1"
        let temporary = old + ".tmp"
        unlink(temporary)
        let copy = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard copy >= 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        var ok = fchmod(copy, 0o600) == 0
        while ok {
            let n = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                ok = n == 0
                break
            }
            ok = writeAll(copy, buffer[..<n])
        }
        close(copy)
        guard ok, rename(temporary, old) == 0 else {
            unlink(temporary)
            return false
        }
        return truncate(path, 0) == 0
    }

    /// The end of `path` from `offset` on: at most `limit` bytes, starting at a whole line when cut. A file now
    /// shorter than `offset` was truncated since (`truncateIfFull`): all of it is newer than `offset`.
    package static func tail(_ path: String, from offset: UInt64 = 0, limit: Int = tailLimit) -> String {
        tailAndEnd(path, from: offset, limit: limit).text
    }

    /// `tail`, and the offset it read up to: where the next read of what comes after starts.
    package static func tailAndEnd(_ path: String, from offset: UInt64 = 0, limit: Int = tailLimit) -> (text: String, end: UInt64) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return ("", offset) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return ("", offset) }
        let size = UInt64(max(0, st.st_size))
        let start = offset <= size ? offset : 0
        let from = max(start, size > UInt64(limit) ? size - UInt64(limit) : 0)
        var bytes = [UInt8](repeating: 0, count: Int(size - from))
        var got = 0
        while got < bytes.count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, $0.count - got, off_t(from) + off_t(got)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            got += n
        }
        var text = bytes[..<got]
        if from > start, let newline = text.firstIndex(of: UInt8(ascii: "\n")) { text = text[(newline + 1)...] }
        return (String(decoding: text, as: UTF8.self), from + UInt64(got))
    }

    private static func writeAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }

    static func size(of path: String) -> UInt64? {
        var st = stat()
        guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return nil }
        return UInt64(max(0, st.st_size))
    }
}
