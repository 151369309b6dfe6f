import Foundation
import Testing
@testable import FwdCore
#if canImport(Glibc)
import Glibc
#endif

/// The relay and `fwd askpass` without ssh: the test process stands in for the master, so the askpass it
/// starts is in the master's tree, as ssh's askpass is.
@Suite("Askpass relay", .serialized)
struct AskpassRelayTests {
    private func withRelay(_ body: (AskpassRelay, RelayEvents, String) async throws -> Void) async throws {
        let dir = "/tmp/fwd-a-\(UUID().uuidString.prefix(6).lowercased())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let relay = try AskpassRelay(directory: dir, askpassProgram: FwdFixture.binary)
        defer { relay.close() }
        try await body(relay, RelayEvents(relay), dir)
    }

    /// Runs the fwd binary exactly as ssh does: `SSH_ASKPASS PROMPT`, stdout to a file.
    private func askpass(_ prompt: String, relay: AskpassRelay, dir: String, hint: String? = nil) throws -> (ChildProcess, String) {
        var environment = ProcessInfo.processInfo.environment.merging(relay.environment) { $1 }
        environment["SSH_ASKPASS_PROMPT"] = hint
        let out = dir + "/askpass-\(UUID().uuidString.prefix(6)).out"
        // sh keeps stdout and stderr apart (ChildProcess joins them).
        let child = try ChildProcess(["/bin/sh", "-c", "exec \"$0\" \"$1\" 2>/dev/null", FwdFixture.binary, prompt], outputPath: out,
                                     environment: environment)
        return (child, out)
    }

    @Test("the answer reaches the askpass's stdout with a newline and it exits 0")
    func answer() async throws {
        try await withRelay { relay, events, dir in
            let cancelled = Flag()
            relay.attach(masterPid: getpid()) { cancelled.set() }
            let (child, out) = try askpass("(a@b) Verification code: ", relay: relay, dir: dir)
            let prompt = try #require(await events.prompt())
            #expect(prompt.text == "(a@b) Verification code: ")
            #expect(prompt.hint == .answer)
            try relay.answer(prompt.id, with: "123456")
            #expect(child.waitExit(timeout: 5) == .exited(0))
            #expect(FileSystem.read(out) == "123456\n")
            #expect(!cancelled.isSet)
        }
    }

    @Test("SSH_ASKPASS_PROMPT reaches the relay as the hint")
    func hints() async throws {
        try await withRelay { relay, events, dir in
            relay.attach(masterPid: getpid()) {}
            let (confirm, _) = try askpass("Allow shared connection to a.lab? ", relay: relay, dir: dir, hint: "confirm")
            let first = try #require(await events.prompt())
            #expect(first.hint == .confirm && first.echo)
            try relay.answer(first.id, with: "yes")
            #expect(confirm.waitExit(timeout: 5) == .exited(0))
            let (notice, _) = try askpass("Confirm user presence for key ED25519-SK SHA256:x", relay: relay, dir: dir, hint: "none")
            let second = try #require(await events.prompt())
            #expect(second.hint == .notice)
            // ssh ends a notice's askpass with SIGTERM when it is done: the prompt is withdrawn.
            notice.signal(SIGTERM)
            #expect(await events.next(timeout: 3) == .withdrawn(second.id))
        }
    }

    @Test("cancel calls onCancel first, then the askpass exits 1 with nothing on stdout")
    func cancel() async throws {
        try await withRelay { relay, events, dir in
            let cancelled = Flag()
            relay.attach(masterPid: getpid()) { cancelled.set() }
            let (child, out) = try askpass("a@b's password: ", relay: relay, dir: dir)
            let prompt = try #require(await events.prompt())
            relay.cancel(prompt.id)
            #expect(cancelled.isSet)
            #expect(child.waitExit(timeout: 5) == .exited(1))
            #expect(FileSystem.read(out) == "")
        }
    }

    @Test("an answer ssh would cut or truncate is refused, and the prompt stays open")
    func invalidAnswers() async throws {
        try await withRelay { relay, events, dir in
            relay.attach(masterPid: getpid()) {}
            let (child, out) = try askpass("a@b's password: ", relay: relay, dir: dir)
            let prompt = try #require(await events.prompt())
            #expect(throws: AskpassRelayError.self) { try relay.answer(prompt.id, with: "two\nlines") }
            #expect(throws: AskpassRelayError.self) { try relay.answer(prompt.id, with: String(repeating: "x", count: 1024)) }
            #expect(relay.openPrompts == [prompt.id])
            try relay.answer(prompt.id, with: String(repeating: "x", count: 1023))
            #expect(child.waitExit(timeout: 5) == .exited(0))
            #expect(FileSystem.read(out) == String(repeating: "x", count: 1023) + "\n")
        }
    }

    @Test("closing the relay withdraws its open prompts and ends the stream")
    func closeWithdraws() async throws {
        try await withRelay { relay, events, dir in
            relay.attach(masterPid: getpid()) {}
            let (child, _) = try askpass("a@b's password: ", relay: relay, dir: dir)
            let prompt = try #require(await events.prompt())
            relay.close()
            #expect(await events.next(timeout: 3) == .withdrawn(prompt.id))
            #expect(child.waitExit(timeout: 5) == .exited(1))
            #expect(!FileManager.default.fileExists(atPath: relay.socketPath))
        }
    }

    @Test("a connection before attach waits for it, then is judged by the master's tree")
    func waitsForAttach() async throws {
        try await withRelay { relay, events, dir in
            let (child, out) = try askpass("a@b's password: ", relay: relay, dir: dir)
            #expect(await events.next(timeout: 0.5) == nil)
            relay.attach(masterPid: getpid()) {}
            let prompt = try #require(await events.prompt())
            try relay.answer(prompt.id, with: "ok")
            #expect(child.waitExit(timeout: 5) == .exited(0))
            #expect(FileSystem.read(out) == "ok\n")
        }
    }

    @Test("without the relay's socket the askpass fails at once")
    func noRelay() async throws {
        let start = Date()
        let (exit, output) = try ChildProcess.run(["/usr/bin/env", "FWD_ASKPASS_SOCKET=/tmp/fwd-no-such-relay/ask", FwdFixture.binary,
                                                   "a@b's password: "])
        #expect(exit == .exited(1))
        #expect(output.contains("cannot reach the fwd prompt relay at /tmp/fwd-no-such-relay/ask"))
        #expect(Date().timeIntervalSince(start) < 2)
    }
}

final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
