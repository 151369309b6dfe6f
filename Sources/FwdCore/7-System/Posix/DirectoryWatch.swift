import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Changes to the entries of one directory, as inotify reports them, waited for on the `Reactor`. A file is
/// watched through its directory because editors save by writing a new file and renaming it over the old
/// one, which a watch on the file itself would lose.
package enum DirectoryWatch {
    package struct Events: OptionSet, Sendable {
        package let rawValue: UInt32
        package init(rawValue: UInt32) { self.rawValue = rawValue }
        #if os(Linux)
        package static let created = Events(rawValue: UInt32(IN_CREATE))
        package static let movedIn = Events(rawValue: UInt32(IN_MOVED_TO))
        package static let movedOut = Events(rawValue: UInt32(IN_MOVED_FROM))
        package static let deleted = Events(rawValue: UInt32(IN_DELETE))
        package static let written = Events(rawValue: UInt32(IN_CLOSE_WRITE))
        #else
        package static let created = Events(rawValue: 1)
        package static let movedIn = Events(rawValue: 2)
        package static let movedOut = Events(rawValue: 4)
        package static let deleted = Events(rawValue: 8)
        package static let written = Events(rawValue: 16)
        #endif
        /// Whatever replaces, writes or removes an entry.
        package static let anyChange: Events = [.created, .movedIn, .movedOut, .deleted, .written]
    }

    /// Watches `directory` for `events`. `body` runs once as soon as the watch is in place (with no names: a
    /// change made before that is seen by checking then), and after each batch of events with the names of
    /// the entries they were about. Returns when `body` returns false or the task is cancelled; false at once
    /// where inotify is not available (not Linux, or out of watches), and the caller falls back to polling.
    package static func watch(_ directory: String, for events: Events, _ body: ([String]) async -> Bool) async -> Bool {
        #if os(Linux)
        let raw = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard raw >= 0 else { return false }
        let watch = Descriptor(raw)
        guard inotify_add_watch(watch.raw, directory, events.rawValue) >= 0 else { return false }
        guard await body([]) else { return true }
        var buffer = [UInt8](repeating: 0, count: 8192)
        while !Task.isCancelled {
            switch await Reactor.shared.wait(watch.raw, for: .read) {
            case .ready, .timedOut: break
            case .cancelled, .closed, .failed: return true
            }
            var names: [String] = []
            while true {
                let n = read(watch.raw, &buffer, buffer.count)
                guard n > 0 else { break }
                names += Self.names(in: buffer[..<n])
            }
            if !(await body(names)) { return true }
        }
        return true
        #else
        return false
        #endif
    }

    /// The names in a buffer of `struct inotify_event` records: wd, mask, cookie, len (4 bytes each), then
    /// `len` bytes of NUL-padded name.
    static func names(in bytes: ArraySlice<UInt8>) -> [String] {
        var names: [String] = []
        var i = bytes.startIndex
        while i + 16 <= bytes.endIndex {
            let length = Int(bytes[(i + 12)..<(i + 16)].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
            let start = i + 16, end = min(start + length, bytes.endIndex)
            let name = bytes[start..<end].prefix { $0 != 0 }
            if !name.isEmpty { names.append(String(decoding: name, as: UTF8.self)) }
            i = start + length
        }
        return names
    }
}
