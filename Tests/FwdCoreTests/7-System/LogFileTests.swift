import Foundation
import Testing
@testable import FwdCore
#if canImport(Glibc)
import Glibc
#endif

/// `LogFile`: the cap, the one older generation, and reads from the end only.
@Suite struct LogFileTests {
    private func withDirectory<T>(_ body: (String) throws -> T) throws -> T {
        let dir = NSTemporaryDirectory() + "fwd-log-" + UUID().uuidString
        try FileSystem.makePrivateDirectory(dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        return try body(dir)
    }

    @Test func tailReadsFromTheOffsetAndAtMostTheLimitStartingAtALine() throws {
        try withDirectory { dir in
            let path = dir + "/h.log"
            try FileSystem.writeAtomically("old run\nnew 1\nnew 2\n", to: path)
            #expect(LogFile.tail(path, from: 8) == "new 1\nnew 2\n")
            #expect(LogFile.tail(path, from: 0, limit: 9) == "new 2\n", "a cut line is dropped")
            #expect(LogFile.tail(path, from: 100) == "old run\nnew 1\nnew 2\n", "shorter than the offset: truncated since")
            #expect(LogFile.tail(dir + "/missing") == "")
            let (text, end) = LogFile.tailAndEnd(path, from: 8)
            #expect(text == "new 1\nnew 2\n" && end == 20)
        }
    }

    @Test func rotationAtSpawnKeepsOneGeneration() throws {
        try withDirectory { dir in
            let path = dir + "/h.log"
            try FileSystem.writeAtomically("small\n", to: path)
            LogFile.rotateIfFull(path, cap: 10)
            #expect(FileSystem.read(path) == "small\n" && !FileSystem.exists(path + ".1"), "under the cap: left alone")
            try FileSystem.writeAtomically("second generation\n", to: path + ".1")
            try FileSystem.writeAtomically("more than ten bytes\n", to: path)
            LogFile.rotateIfFull(path, cap: 10)
            #expect(!FileSystem.exists(path))
            #expect(FileSystem.read(path + ".1") == "more than ten bytes\n", "replaces the older generation")
        }
    }

    /// The writer keeps its O_APPEND descriptor across the truncation, as ssh does.
    @Test func truncationUnderAnAppendingWriterLeavesNoHole() throws {
        try withDirectory { dir in
            let path = dir + "/h.log"
            let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o600)
            #expect(fd >= 0)
            defer { close(fd) }
            let before = String(repeating: "x", count: 100) + "\n"
            _ = before.withCString { write(fd, $0, strlen($0)) }
            #expect(!LogFile.truncateIfFull(path, cap: 1000), "under the cap")
            #expect(LogFile.truncateIfFull(path, cap: 50))
            #expect(FileSystem.read(path + ".1") == before)
            #expect(FileSystem.mode(of: path + ".1") == 0o600)
            _ = "after\n".withCString { write(fd, $0, strlen($0)) }
            #expect(FileSystem.readBytes(path) == Array("after\n".utf8), "written at the new end, offset 0")
        }
    }
}
