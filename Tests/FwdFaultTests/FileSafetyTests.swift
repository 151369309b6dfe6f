import Foundation
@testable import FwdCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What fwd leaves on disk: private modes, no secrets, and a config file that is replaced whole or not at all.
@Suite(.serialized) struct FileSafetyTests {
    /// `fwd add` SIGKILLed after a random few milliseconds, 200 times: the config is always the old text or the
    /// new one, never a mix, and it always parses. Needs no root.
    @Test func killedConfigWriterNeverLeavesATornFile() throws {
        let dir = NSTemporaryDirectory() + "fwd-kill-add-\(UUID().uuidString.prefix(8))"
        try FileSystem.makePrivateDirectory(dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/fwd.toml"
        // A sizeable file, so a torn write would be visible: comments and a hundred tunnels.
        var text = "# my tunnels — keep this comment\n[hosts.office]\nhostname = \"a.example.com\"   # and this one\n\n"
        for i in 0..<100 { text += "[tunnels.old\(i)]\nhost = \"office\"\nlocal = \"\(20_000 + i):wiki.lan:80\"\n\n" }
        try FileSystem.writeAtomically(text, to: path)
        var env = ProcessInfo.processInfo.environment
        env["FWD_CONFIG"] = path
        env["FWD_STATE_DIR"] = dir + "/state"

        // How long an uninterrupted `fwd add` takes here; the kills then land from 5 % to 105 % of that. The write
        // and the rename come early (after them, `fwd add` rewrites the ssh_config and checks the name).
        let scratch = dir + "/scratch.toml"
        var scratchEnv = env
        scratchEnv["FWD_CONFIG"] = scratch
        var timings: [Double] = []
        for i in 0..<5 {
            try FileSystem.writeAtomically(text, to: scratch)
            let t = Date()
            let child = try ChildProcess([FaultFixture.binary, "add", "probe\(i)", "--host", "office", "-L", "1:wiki.lan:80"], environment: scratchEnv)
            #expect(child.waitExit(timeout: 10) == .exited(0))
            timings.append(Date().timeIntervalSince(t))
        }
        try FileManager.default.removeItem(atPath: scratch)
        let typical = timings.sorted()[2]
        var rng = SeededRandom(seed: 0xadd)
        var kept = 0, replaced = 0, killedEarly = 0
        for i in 0..<200 {
            let name = "new\(i)"
            let expected = try ConfigEditor.appending(
                ConfigEditor.table(for: Tunnel(name: name, host: "office", forwards: [try ForwardSpec.parse("\(30_000 + i):wiki.lan:80", kind: .local)])),
                named: name, to: text, path: path).text
            let child = try ChildProcess([FaultFixture.binary, "add", name, "--host", "office", "-L", "\(30_000 + i):wiki.lan:80"], environment: env)
            usleep(UInt32(typical * 1e6 * (0.05 + 1.0 * rng.unit())))
            child.signal(SIGKILL)
            let exit = child.waitExit(timeout: 10)
            if exit == .signaled(SIGKILL) { killedEarly += 1 }
            let now = try #require(FileSystem.read(path))
            if now == text {
                kept += 1
            } else if now == expected {
                replaced += 1
                text = now
            } else {
                Issue.record("round \(i): the config is neither the old nor the new text (\(now.utf8.count) bytes)")
                break
            }
            #expect(throws: Never.self) { _ = try ConfigLoader.parse(now, path: path) }
            #expect(FileSystem.mode(of: path) == 0o600)
        }
        let leftovers = (try FileManager.default.contentsOfDirectory(atPath: dir)).filter { $0.hasSuffix(".tmp") }
        print("fwd fault: config writer SIGKILLed 200 times (an uninterrupted `fwd add` takes \(Int(typical * 1000)) ms here) — old text kept \(kept)×, new text \(replaced)× (\(killedEarly) runs died by the signal, the rest had finished); torn files 0; temporary files left behind \(leftovers.count)")
        #expect(kept > 0 && replaced > 0, "the kills should land both before and after the rename")
        // The next write that completes removes what the killed writers left.
        let last = try ChildProcess([FaultFixture.binary, "add", "last", "--host", "office", "-L", "29999:wiki.lan:80"], environment: env)
        #expect(last.waitExit(timeout: 10) == .exited(0))
        let after = (try FileManager.default.contentsOfDirectory(atPath: dir)).filter { $0.hasSuffix(".tmp") }
        #expect(after.isEmpty, "\(after)")
    }

    /// Modes of everything fwd writes while a tunnel runs, and no secret in any of it.
    @Test(.enabled(if: isRoot, "needs root for network namespaces"))
    func stateFilesArePrivateAndHoldNoSecret() async throws {
        try await FaultFixture.with { f in
            try f.write(config: f.webTunnel("wiki", port: 18080))
            try #require(try f.fwd("up", "wiki").ok)
            #expect(try f.fwd("check", "wiki").ok)
            var modes: [String: mode_t] = [:]
            let state = f.stateDir
            for entry in try FileManager.default.subpathsOfDirectory(atPath: state) {
                modes[entry] = FileSystem.mode(of: state + "/" + entry)
            }
            #expect(FileSystem.mode(of: state) == 0o700)
            for required in ["fwd.db", "ssh_config", "ssh_config.fwd", "logs", "logs/lab.log", "logs/daemon.log"] {
                #expect(modes[required] != nil, "\(required) missing: \(modes.keys.sorted())")
            }
            for (entry, mode) in modes.sorted(by: { $0.key < $1.key }) {
                let isDir = (try? FileManager.default.attributesOfItem(atPath: state + "/" + entry)[.type] as? FileAttributeType) == .typeDirectory
                #expect(mode == (isDir ? 0o700 : 0o600), "\(entry) has mode \(String(mode, radix: 8))")
            }
            let control = f.paths.controlDirectory
            #expect(FileSystem.mode(of: control) == 0o700)
            for socket in try FileManager.default.contentsOfDirectory(atPath: control) {
                #expect((FileSystem.mode(of: control + "/" + socket) ?? 0) & 0o077 == 0, "\(socket) is reachable by others")
            }
            print("fwd fault: files — state dir 0700; \(modes.map { "\($0.key) \(String($0.value, radix: 8))" }.sorted().joined(separator: ", ")); control dir 0700")

            // The private key's body appears in no file fwd wrote (the database, logs, ssh_config files).
            let key = try String(contentsOfFile: f.sshd.clientKey, encoding: .utf8).split(separator: "\n")
                .filter { !$0.hasPrefix("-----") }.joined()
            let probe = String(key.prefix(40))
            for entry in modes.keys {
                guard let data = FileManager.default.contents(atPath: state + "/" + entry) else { continue }
                let text = String(decoding: data, as: UTF8.self)
                #expect(!text.contains(probe) && !text.contains("PRIVATE KEY"), "\(entry) holds key material")
            }
        }
    }
}
