import Foundation
import Testing
@testable import FwdCore
#if canImport(Glibc)
import Glibc
#endif

/// The askpass relay against real sshd servers and a real `ssh -N -M` without BatchMode, with `fwd askpass` (the
/// built binary) as its SSH_ASKPASS: every kind of question reaches the relay in ssh's words, the answer goes
/// only to the ssh that asked, and ssh's own rules (retries, host keys) still apply.
@Suite("Login relay", .serialized)
struct LoginRelayTests {
    /// Runs `body` with the fixture's master started under a relay; stops the master, then closes the relay.
    @discardableResult
    private func login<T>(_ kind: LoginFixture.Kind,
                          _ body: (LoginFixture, AskpassRelay, RelayEvents, ControlMaster) async throws -> T) async throws -> T? {
        if let reason = LoginFixture.unavailable(kind) {
            print("skipped: \(reason)")
            return nil
        }
        return try await LoginFixture.with(kind) { f in
            let relay = try f.makeRelay()
            defer { relay.close() }
            let events = RelayEvents(relay)
            let master = try await f.startMaster(relay: relay)
            do {
                let result = try await body(f, relay, events, master)
                await master.stop(grace: 0.5)
                return result
            } catch {
                await master.stop(grace: 0.5)
                throw error
            }
        }
    }

    @Test("password: the prompt arrives, the answer logs in, and the password is nowhere else")
    func password() async throws {
        try await login(.password) { f, relay, events, master in
            let prompt = try #require(await events.prompt())
            #expect(prompt.text == "\(f.loginName)@127.0.0.1's password: ")
            #expect(prompt.kind == .password)
            #expect(prompt.hint == .answer)
            #expect(!prompt.echo)
            try relay.answer(prompt.id, with: f.secret)
            #expect(f.waitForMaster())
            #expect(f.sshdLog(containing: "Accepted password for \(f.loginName)").count == 1)
            #expect(relay.openPrompts.isEmpty)
            let pids = SecretHygiene.processTree(of: master.pid) + [Int32(getpid())] + [f.sshd.pid].compactMap { $0 }
            #expect(SecretHygiene.findings(of: f.secret, directories: [f.dir, f.socketDirectory], pids: pids) == [],
                    "the password leaked")
        }
    }

    @Test("a person types the password at a terminal: relay, prompter and ssh together")
    func typedAtTerminal() async throws {
        try await login(.password) { f, relay, events, master in
            let pty = try PseudoTerminal()
            let before = pty.settings
            let prompt = try #require(await events.prompt())
            let asking = Task { await TerminalPrompter(ttyPath: pty.path).ask(prompt) }
            #expect(pty.waitFor("\(f.loginName)@127.0.0.1's password: "))
            pty.type(f.secret + "\r")
            guard case .answer(let typed) = await asking.value else {
                Issue.record("no answer from the terminal")
                return
            }
            try relay.answer(prompt.id, with: typed)
            #expect(f.waitForMaster())
            #expect(!pty.screen.contains(f.secret))
            #expect(pty.settings == before)
            let pids = SecretHygiene.processTree(of: master.pid) + [Int32(getpid())]
            #expect(SecretHygiene.findings(of: f.secret, directories: [f.dir, f.socketDirectory], pids: pids) == [])
        }
    }

    @Test("password: a wrong answer three times and ssh gives up with Permission denied")
    func wrongPassword() async throws {
        try await login(.password) { f, relay, events, master in
            var prompts: [LoginPrompt] = []
            for _ in 0..<3 {
                let prompt = try #require(await events.prompt())
                prompts.append(prompt)
                try relay.answer(prompt.id, with: "not-the-password")
            }
            #expect(await master.waitExit() == 255)
            #expect(await events.next(timeout: 1) == nil, "ssh asked a fourth time")
            #expect(prompts.map(\.kind) == [.password, .password, .password])
            // What plain ssh shows between attempts travels with the next prompt.
            #expect(prompts[1].messages.contains("Permission denied, please try again."))
            #expect(master.stderr().contains("Permission denied (publickey,password)"))
            #expect(f.sshdLog(containing: "Failed password for \(f.loginName)").count == 3, "\(f.sshd.log())")
        }
    }

    @Test("cancel ends ssh at once, and the server sees no password attempt")
    func cancel() async throws {
        try await login(.password) { f, relay, events, master in
            let prompt = try #require(await events.prompt())
            let start = Date()
            relay.cancel(prompt.id)
            let status = await master.waitExit()
            #expect(Date().timeIntervalSince(start) < 1)
            #expect(status == 128 + SIGTERM)
            #expect(f.sshdLog(containing: "Failed password").isEmpty)
            #expect(!f.masterIsUp())
        }
    }

    @Test("a prompt is withdrawn when its ssh is killed")
    func withdrawn() async throws {
        try await login(.password) { f, relay, events, master in
            let prompt = try #require(await events.prompt())
            kill(master.pid, SIGKILL)
            let start = Date()
            #expect(await events.next(timeout: 3) == .withdrawn(prompt.id))
            #expect(Date().timeIntervalSince(start) < 1)
            #expect(relay.openPrompts.isEmpty)
            #expect(throws: AskpassRelayError.unknownPrompt(prompt.id)) { try relay.answer(prompt.id, with: f.secret) }
        }
    }

    @Test("one-time code: the server's Verification code prompt arrives and a correct code logs in")
    func oneTimeCode() async throws {
        try await login(.oneTimeCode) { f, relay, events, _ in
            let prompt = try #require(await events.prompt())
            #expect(prompt.kind == .keyboardInteractive)
            #expect(prompt.text.hasPrefix("(\(f.loginName)@127.0.0.1) "))
            #expect(prompt.text.hasSuffix("Verification code: "))
            // A PAM message before the prompt is part of the prompt text.
            #expect(prompt.text.contains("Open your authenticator app for user \(f.loginName)\n"))
            try relay.answer(prompt.id, with: try f.code())
            #expect(f.waitForMaster())
            #expect(f.sshdLog(containing: "Accepted keyboard-interactive/pam for \(f.loginName)").count == 1)
        }
    }

    @Test("one-time code: the server's message after a wrong code travels with the next prompt; three tries")
    func wrongCode() async throws {
        try await login(.oneTimeCode) { f, relay, events, master in
            var prompts: [LoginPrompt] = []
            for _ in 0..<3 {
                let prompt = try #require(await events.prompt())
                prompts.append(prompt)
                try relay.answer(prompt.id, with: try f.wrongCode())
            }
            #expect(await master.waitExit() == 255)
            #expect(await events.next(timeout: 1) == nil, "ssh asked a fourth time")
            #expect(!prompts[0].messages.contains("That code was not accepted."))
            #expect(prompts[1].messages.contains("That code was not accepted."))
            #expect(prompts[2].messages.contains("That code was not accepted."))
            #expect(f.sshdLog(containing: "Failed keyboard-interactive/pam").count == 3)
        }
    }

    @Test("passphrase: the prompt names the key and the right passphrase logs in")
    func passphrase() async throws {
        try await login(.passphraseKey) { f, relay, events, _ in
            let prompt = try #require(await events.prompt())
            #expect(prompt.text == "Enter passphrase for key '\(f.identity)': ")
            #expect(prompt.kind == .keyPassphrase)
            try relay.answer(prompt.id, with: f.secret)
            #expect(f.waitForMaster())
        }
    }

    @Test("passphrase: three wrong passphrases and ssh gives up")
    func wrongPassphrase() async throws {
        try await login(.passphraseKey) { _, relay, events, master in
            for _ in 0..<3 {
                let prompt = try #require(await events.prompt())
                #expect(prompt.kind == .keyPassphrase)
                try relay.answer(prompt.id, with: "wrong-phrase")
            }
            #expect(await master.waitExit() == 255)
            #expect(await events.next(timeout: 1) == nil, "ssh asked a fourth time")
            #expect(master.stderr().contains("Permission denied (publickey)"))
        }
    }

    @Test("first contact: the question carries the fingerprint and yes records the key")
    func hostKeyYes() async throws {
        try await login(.firstContact) { f, relay, events, master in
            let prompt = try #require(await events.prompt())
            #expect(prompt.kind == .hostKey)
            #expect(prompt.echo)
            #expect(prompt.text.hasPrefix("The authenticity of host '[127.0.0.1]:\(f.sshd.port) ([127.0.0.1]:\(f.sshd.port))' can't be established.\n"))
            #expect(prompt.text.contains("ED25519 key fingerprint is \(try f.hostKeyFingerprint()).\n"))
            #expect(prompt.text.hasSuffix("Are you sure you want to continue connecting (yes/no/[fingerprint])? "))
            try relay.answer(prompt.id, with: "yes")
            #expect(f.waitForMaster())
            let lookup = try ChildProcess.run(["ssh-keygen", "-F", "[127.0.0.1]:\(f.sshd.port)", "-f", f.knownHosts])
            #expect(lookup.exit == .exited(0), "the key is not in known_hosts")
            #expect(master.stderr().contains("Permanently added '[127.0.0.1]:\(f.sshd.port)' (ED25519) to the list of known hosts."))
        }
    }

    @Test("first contact: no leaves known_hosts byte-identical and ssh fails")
    func hostKeyNo() async throws {
        try await login(.firstContact) { f, relay, events, master in
            // Not empty, so "identical" means more than "still empty".
            let before = "other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3ZvBfq2Fw5mV3l1DFt1wCqCiK6l5kzH9J1oIvY5cP7\n"
            try FileSystem.writeAtomically(before, to: f.knownHosts)
            let prompt = try #require(await events.prompt())
            #expect(prompt.kind == .hostKey)
            try relay.answer(prompt.id, with: "no")
            #expect(await master.waitExit() == 255)
            #expect(master.stderr().contains("Host key verification failed."))
            #expect(FileManager.default.contents(atPath: f.knownHosts) == Data(before.utf8))
        }
    }

    @Test("first contact: any other answer gets ssh's own retry question")
    func hostKeyRetry() async throws {
        try await login(.firstContact) { f, relay, events, master in
            let first = try #require(await events.prompt())
            try relay.answer(first.id, with: "maybe")
            let again = try #require(await events.prompt())
            #expect(again.text == "Please type 'yes', 'no' or the fingerprint: ")
            #expect(again.kind == .hostKey)
            relay.cancel(again.id)
            #expect(await master.waitExit() == 128 + SIGTERM)
            #expect(FileManager.default.contents(atPath: f.knownHosts) == Data())
        }
    }

    @Test("a process outside the master's tree cannot ask, and nothing reaches the relay's consumer")
    func strangerRefused() async throws {
        try await login(.password) { f, relay, events, _ in
            let prompt = try #require(await events.prompt())
            let environment = ProcessInfo.processInfo.environment.merging(relay.environment) { $1 }
            let stranger = try ChildProcess([FwdFixture.binary, "askpass", "stranger's password: "], outputPath: f.dir + "/stranger.out",
                                            environment: environment)
            #expect(stranger.waitExit(timeout: 5) == .exited(1))
            #expect(relay.refusedConnections == 1)
            #expect(FileSystem.read(f.dir + "/stranger.out")?.contains(f.secret) != true)
            // The real prompt is still open and works.
            try relay.answer(prompt.id, with: f.secret)
            #expect(f.waitForMaster())
            #expect(!events.all.contains { if case .prompt(let p) = $0 { p.text.hasPrefix("stranger") } else { false } })
        }
    }

    @Test("through a ProxyJump both logins ask: the jump's ssh is in the master's tree")
    func proxyJump() async throws {
        if let reason = LoginFixture.unavailable(.password) {
            print("skipped: \(reason)")
            return
        }
        try await LoginFixture.with(.password) { f in
            let config = try String(contentsOfFile: f.clientConfig, encoding: .utf8)
            let jumped = config.replacingOccurrences(of: "Host login\n", with: "Host login-jumped\n    ProxyJump login\n")
            try FileSystem.writeAtomically(config + "\n" + jumped, to: f.clientConfig)
            let relay = try f.makeRelay()
            defer { relay.close() }
            let events = RelayEvents(relay)
            let master = try await f.startMaster(relay: relay, host: "login-jumped")
            for _ in 0..<2 {
                let prompt = try #require(await events.prompt())
                #expect(prompt.kind == .password)
                try relay.answer(prompt.id, with: f.secret)
            }
            #expect(f.waitForMaster())
            #expect(f.sshdLog(containing: "Accepted password for \(f.loginName)").count == 2)
            #expect(relay.refusedConnections == 0)
            await master.stop(grace: 0.5)
        }
    }

    @Test("another user cannot even connect to the relay socket")
    func otherUserRefused() async throws {
        guard geteuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            print("skipped: needs root and setpriv to act as another user")
            return
        }
        try await login(.passphraseKey) { f, relay, events, _ in
            let prompt = try #require(await events.prompt())
            var environment = relay.environment
            environment["PATH"] = "/usr/bin:/bin"
            let out = f.dir + "/other-user.out"
            let other = try ChildProcess(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", FwdFixture.binary,
                                          "askpass", "x"], outputPath: out, environment: environment)
            #expect(other.waitExit(timeout: 5) == .exited(1))
            // The binary ran (it names the relay) and the socket refused it.
            let output = FileSystem.read(out) ?? ""
            #expect(output.contains("cannot reach the fwd prompt relay at \(relay.socketPath): Permission denied"), "\(output)")
            try relay.answer(prompt.id, with: f.secret)
            #expect(f.waitForMaster())
        }
    }

    @Test("the relay's environment holds no secret and its socket is private")
    func environmentAndModes() async throws {
        try await LoginFixture.with(.firstContact) { f in
            let relay = try f.makeRelay()
            defer { relay.close() }
            #expect(relay.environment == ["SSH_ASKPASS": FwdFixture.binary, "SSH_ASKPASS_REQUIRE": "force",
                                          "FWD_ASKPASS_SOCKET": relay.socketPath])
            #expect(relay.socketPath.utf8.count < 100)
            var st = stat()
            #expect(lstat(relay.socketPath, &st) == 0 && st.st_mode & 0o777 == 0o600)
            #expect(lstat(f.socketDirectory, &st) == 0 && st.st_mode & 0o777 == 0o700)
            relay.close()
            #expect(!FileManager.default.fileExists(atPath: relay.socketPath))
        }
    }
}
