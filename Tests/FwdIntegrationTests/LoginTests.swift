import Foundation
import Testing
@testable import FwdCore
import FwdLab
#if canImport(Glibc)
import Glibc
#endif

/// Logging in as a person would: the real `fwd up` on a pseudo-terminal against real sshd servers that want a
/// password, a one-time code, a key passphrase or a decision on a new host key. The question appears on the
/// terminal in ssh's words, the answer brings the tunnel up, and without a terminal fwd fails at once with what
/// is needed. After a drop, fwd does not log in again by itself.
@Suite("Logging in through fwd up", .serialized)
struct LoginTests {
    /// A fwd world whose `login` host is the login fixture's server, with one tunnel `wiki` (and `docs`) on it.
    private func world(_ kind: LoginFixture.Kind, _ body: (FwdFixture, LoginFixture, Int) async throws -> Void) async throws {
        if let reason = LoginFixture.unavailable(kind) {
            print("skipped: \(reason)")
            return
        }
        try await FwdFixture.with { f in
            try await LoginFixture.with(kind) { login in
                try f.write(userSSHConfig: try String(contentsOfFile: login.clientConfig, encoding: .utf8))
                let port = try LocalPort.free()
                try f.write(config: """
                [tunnels.wiki]
                host = "login"
                local = "\(port):127.0.0.1:\(f.web.port)"
                probe = "http"

                [tunnels.docs]
                host = "login"
                local = "\(try LocalPort.free()):127.0.0.1:\(f.web.port)"
                probe = "http"

                """)
                try await body(f, login, port)
                _ = try? f.fwd("daemon", "--stop", timeout: 30)
            }
        }
    }

    /// `fwd up ARGS` on a pseudo-terminal; `body` reads the screen and types.
    private func onTerminal<T>(_ f: FwdFixture, _ arguments: [String], _ body: (PseudoTerminal) throws -> T) throws -> T {
        try PseudoTerminal.with([FwdFixture.binary] + arguments, environment: f.environment, body)
    }

    private func connections(_ login: LoginFixture) -> Int {
        login.sshdLog(containing: "Connection from 127.0.0.1").count
    }

    /// Every process of this fwd world: supervisors, masters, and whatever runs below them.
    private func fwdProcesses(_ f: FwdFixture) -> [Int32] {
        (f.supervisorProcesses() + f.sshProcesses()).flatMap(SecretHygiene.processTree(of:))
    }

    /// Types `answer` at the question `prompt` on `terminal`, then waits for `fwd up` to say the tunnel is up.
    private func answer(_ terminal: PseudoTerminal, prompt: String, with answer: String, name: String = "wiki") -> (asked: String, after: String, exit: ChildExit?) {
        let asked = terminal.read(since: 0, timeout: 20) { $0.contains(prompt) }
        let mark = terminal.mark
        terminal.type(answer + "\r")
        let after = terminal.read(since: mark, timeout: 30) { $0.contains("\(name): up") }
        return (asked, after, terminal.child.waitExit(timeout: 10))
    }

    @Test("password: fwd up asks on the terminal, the answer brings the tunnel up, a second tunnel rides the master")
    func password() async throws {
        try await world(.password) { f, login, port in
            let prompt = "\(login.loginName)@127.0.0.1's password: "
            let run = try onTerminal(f, ["up", "wiki"]) { answer($0, prompt: prompt, with: login.secret) }
            #expect(run.asked.contains(prompt), "\(run.asked)")
            #expect(run.exit == .exited(0), "\(run.after)")
            #expect(!run.asked.contains(login.secret) && !run.after.contains(login.secret), "the password was echoed")
            #expect(f.fetchRetrying(port: port)?.body.contains(f.pageBody) == true)
            // One login per host: the second tunnel asks nothing, even with no terminal.
            let docs = try f.fwd(arguments: ["up", "docs"])
            #expect(docs.ok, "\(docs.stderr)")
            #expect(login.sshdLog(containing: "Accepted password for \(login.loginName)").count == 1, "\(login.sshd.log())")
            #expect(connections(login) == 1)
            #expect(f.masters().count == 1)
            // The password is nowhere fwd writes or runs.
            let logs = try f.fwd("logs")
            #expect(!logs.stdout.contains(login.secret))
            #expect(SecretHygiene.findings(of: login.secret, directories: [f.stateDir, f.paths.controlDirectory, f.dir + "/config"],
                                           pids: fwdProcesses(f)) == [], "the password leaked")
        }
    }

    @Test("one-time code: the server's Verification code question reaches the terminal and the code brings the tunnel up")
    func oneTimeCode() async throws {
        try await world(.oneTimeCode) { f, login, port in
            let code = try login.code()
            let run = try onTerminal(f, ["up", "wiki"]) { answer($0, prompt: "Verification code: ", with: code) }
            #expect(run.asked.contains("Open your authenticator app for user \(login.loginName)"), "\(run.asked)")
            #expect(run.asked.contains("Verification code: "))
            #expect(run.exit == .exited(0), "\(run.after)")
            #expect(f.fetchRetrying(port: port)?.body.contains(f.pageBody) == true)
            #expect(login.sshdLog(containing: "Accepted keyboard-interactive/pam for \(login.loginName)").count == 1)
        }
    }

    @Test("passphrase: with no terminal fwd fails at once with advice; on a terminal the passphrase brings it up")
    func passphrase() async throws {
        try await world(.passphraseKey) { f, login, port in
            let started = Date()
            let blind = try f.fwd(arguments: ["up", "wiki", "--timeout", "30"])
            #expect(!blind.ok)
            #expect(Date().timeIntervalSince(started) < 10, "fwd waited for an answer nobody can give")
            #expect(blind.stderr.contains("wiki: failed"), "\(blind.stderr)")
            #expect(blind.stderr.contains("needs a key passphrase and no terminal is there to ask"), "\(blind.stderr)")
            #expect(blind.stderr.contains("`fwd up wiki` on a terminal") && blind.stderr.contains("ssh-add"), "\(blind.stderr)")
            #expect(connections(login) == 1, "\(login.sshd.log())")
            #expect(f.sshProcesses().isEmpty)

            // More than 5 s after the attempt: a retry the user asks for is allowed.
            try await Task.sleep(for: .seconds(5))
            let run = try onTerminal(f, ["up", "wiki"]) { answer($0, prompt: "Enter passphrase for key '\(login.identity)': ", with: login.secret) }
            #expect(run.exit == .exited(0), "\(run.asked)\(run.after)")
            #expect(f.fetchRetrying(port: port)?.body.contains(f.pageBody) == true)
            #expect(SecretHygiene.findings(of: login.secret, directories: [f.stateDir, f.paths.controlDirectory], pids: fwdProcesses(f)) == [])
        }
    }

    @Test("first contact: no terminal fails and changes nothing; no changes nothing; yes records the key and comes up")
    func firstContact() async throws {
        try await world(.firstContact) { f, login, port in
            let before = "other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG3ZvBfq2Fw5mV3l1DFt1wCqCiK6l5kzH9J1oIvY5cP7\n"
            try FileSystem.writeAtomically(before, to: login.knownHosts)
            let blind = try f.fwd(arguments: ["up", "wiki"])
            #expect(!blind.ok)
            #expect(blind.stderr.contains("needs a decision on the server's host key"), "\(blind.stderr)")
            #expect(blind.stderr.contains("known_hosts"), "\(blind.stderr)")
            #expect(FileManager.default.contents(atPath: login.knownHosts) == Data(before.utf8))

            try await Task.sleep(for: .seconds(5))
            let fingerprint = try login.hostKeyFingerprint()
            let question = "Are you sure you want to continue connecting (yes/no/[fingerprint])? "
            let refused = try onTerminal(f, ["up", "wiki"]) { t -> (String, ChildExit?) in
                let asked = t.read(since: 0, timeout: 20) { $0.contains(question) }
                t.type("no\r")
                let exit = t.child.waitExit(timeout: 20)
                return (asked + t.read(since: 0, timeout: 1) { _ in false }, exit)
            }
            #expect(refused.0.contains(fingerprint), "\(refused.0)")
            #expect(refused.0.contains("wiki: failed"), "\(refused.0)")
            #expect(refused.1 != .exited(0))
            #expect(FileManager.default.contents(atPath: login.knownHosts) == Data(before.utf8), "\"no\" changed known_hosts")

            try await Task.sleep(for: .seconds(5))
            let accepted = try onTerminal(f, ["up", "wiki"]) { answer($0, prompt: question, with: "yes") }
            #expect(accepted.exit == .exited(0), "\(accepted.asked)\(accepted.after)")
            let lookup = try ChildProcess.run(["ssh-keygen", "-F", "[127.0.0.1]:\(login.sshd.port)", "-f", login.knownHosts])
            #expect(lookup.exit == .exited(0), "the key is not in known_hosts")
            #expect(f.fetchRetrying(port: port)?.body.contains(f.pageBody) == true)
        }
    }

    @Test("StrictHostKeyChecking yes: fwd asks nothing and fails with advice")
    func strictHostKeyChecking() async throws {
        try await world(.firstContact) { f, login, _ in
            let strict = try String(contentsOfFile: login.clientConfig, encoding: .utf8)
                .replacingOccurrences(of: "StrictHostKeyChecking ask", with: "StrictHostKeyChecking yes")
            try f.write(userSSHConfig: strict)
            let screen = try onTerminal(f, ["up", "wiki"]) { t -> String in
                _ = t.child.waitExit(timeout: 20)
                return t.read(since: 0, timeout: 1) { _ in false }
            }
            #expect(!screen.contains("Are you sure"), "\(screen)")
            #expect(screen.contains("wiki: failed") && screen.contains("Host key verification failed"), "\(screen)")
            #expect(screen.contains("known_hosts") || screen.contains("ssh HOST"), "\(screen)")
            #expect(FileManager.default.contents(atPath: login.knownHosts) == Data())
        }
    }

    @Test("drop: an interactively logged-in master that drops waits in needs-auth, makes no login attempt, and fwd up asks again")
    func dropNeedsAuth() async throws {
        try await world(.password) { f, login, port in
            let prompt = "\(login.loginName)@127.0.0.1's password: "
            let first = try onTerminal(f, ["up", "wiki"]) { answer($0, prompt: prompt, with: login.secret) }
            #expect(first.exit == .exited(0), "\(first.after)")
            let sessions = ProcessTable.allPids().filter { pid in
                login.sshd.pid.map { ProcessTable.parent(of: pid) == $0 } ?? false
            }
            #expect(!sessions.isEmpty, "no sshd session to kill")
            // The session's monitor and its unprivileged child, which holds the connection.
            for pid in sessions.flatMap(SecretHygiene.processTree(of:)).reversed() { kill(pid, SIGKILL) }
            #expect(f.waitForState("wiki", .needsAuth, timeout: 15) != nil, "\(String(describing: f.state("wiki")))")
            let row = try #require(try f.reportedStatus("wiki"))
            let error = row["last_error"] as? String ?? row["lastError"] as? String ?? "\(row)"
            #expect(error.contains("run `fwd up wiki` on a terminal"), "\(row)")
            let status = try f.fwd("status")
            #expect(status.stdout.contains("needs-auth"), "\(status.stdout)")
            let logs = try f.fwd("logs", "wiki")
            #expect(logs.stdout.contains("needs-auth"), "\(logs.stdout)")
            let doctor = try f.fwd("doctor")
            #expect(doctor.stdout.contains("wiki waits for a login") && doctor.stdout.contains("ssh-agent"), "\(doctor.stdout)")

            let seen = connections(login)
            try await Task.sleep(for: .seconds(20))
            #expect(connections(login) == seen, "fwd logged in again by itself: \(login.sshd.log())")
            #expect(f.state("wiki") == .needsAuth)
            #expect(f.masters().isEmpty)

            let again = try onTerminal(f, ["up", "wiki"]) { answer($0, prompt: prompt, with: login.secret) }
            #expect(again.asked.contains(prompt), "\(again.asked)")
            #expect(again.exit == .exited(0), "\(again.after)")
            #expect(f.fetchRetrying(port: port)?.body.contains(f.pageBody) == true)
            #expect(SecretHygiene.findings(of: login.secret, directories: [f.stateDir, f.paths.controlDirectory, f.dir + "/config"],
                                           pids: fwdProcesses(f)) == [], "the password leaked")
        }
    }

    @Test("a login waiting with no terminal is told of: fwd_login_needed is 1 and a desktop notification says to run fwd up")
    func waitingLoginIsToldOf() async throws {
        try await world(.password) { f, login, _ in
            guard let standIn = try NotificationStandIn.start(in: f.dir) else { return }
            defer { standIn.stop() }
            let prompt = "\(login.loginName)@127.0.0.1's password: "
            let first = try PseudoTerminal.with([FwdFixture.binary, "up", "wiki"], environment: f.environment(["DBUS_SESSION_BUS_ADDRESS": standIn.address])) {
                answer($0, prompt: prompt, with: login.secret)
            }
            #expect(first.exit == .exited(0), "\(first.after)")
            #expect(try f.fwd("metrics").stdout.contains("fwd_login_needed{host=\"login\"} 0\n"))
            let sessions = ProcessTable.allPids().filter { pid in login.sshd.pid.map { ProcessTable.parent(of: pid) == $0 } ?? false }
            for pid in sessions.flatMap(SecretHygiene.processTree(of:)).reversed() { kill(pid, SIGKILL) }
            #expect(f.waitForState("wiki", .needsAuth, timeout: 15) != nil, "\(String(describing: f.state("wiki")))")
            let metrics = try f.fwd("metrics").stdout
            #expect(metrics.contains("fwd_login_needed{host=\"login\"} 1\n"), "\(metrics)")
            #expect(metrics.contains("fwd_tunnel_state{tunnel=\"wiki\",host=\"login\",state=\"needs-auth\"} 1\n"))
            let note = try #require(standIn.wait(forSummary: "fwd: wiki needs a login", timeout: 5), "\(standIn.notes)")
            #expect((note["body"] as? String)?.contains("run `fwd up wiki` to log in") == true, "\(note)")
            #expect(SecretHygiene.findings(of: login.secret, directories: [f.dir], pids: fwdProcesses(f)) == [], "the password leaked")
        }
    }

    @Test("Ctrl-C at the prompt: fwd up ends, the tunnel is down and no ssh is left")
    func cancelAtPrompt() async throws {
        try await world(.password) { f, login, _ in
            let prompt = "\(login.loginName)@127.0.0.1's password: "
            let (screen, exit) = try onTerminal(f, ["up", "wiki"]) { t -> (String, ChildExit?) in
                _ = t.read(since: 0, timeout: 20) { $0.contains(prompt) }
                t.type("\u{3}")
                let exit = t.child.waitExit(timeout: 10)
                return (t.read(since: 0, timeout: 1) { _ in false }, exit)
            }
            #expect(screen.contains(prompt))
            #expect(exit == .exited(130), "\(screen)")
            #expect(screen.contains("cancelled at the login prompt"), "\(screen)")
            #expect(f.state("wiki") == .down)
            f.waitUntil(timeout: 3, every: 0.05) { f.sshProcesses().isEmpty }
            #expect(f.sshProcesses().isEmpty, "an ssh is left")
            #expect(login.sshdLog(containing: "Failed password").isEmpty, "an empty password reached the server")
        }
    }

    @Test("fwd run asks on its own terminal; Ctrl-C at the question ends the run with no ssh left")
    func runAsksItsTerminal() async throws {
        try await world(.password) { f, login, port in
            let prompt = "\(login.loginName)@127.0.0.1's password: "
            let screen = try onTerminal(f, ["run", "wiki"]) { t -> String in
                let asked = t.read(since: 0, timeout: 20) { $0.contains(prompt) }
                t.type(login.secret + "\r")
                let up = t.read(since: 0, timeout: 30) { $0.contains("→ up") }
                #expect(f.fetchRetrying(port: port)?.body.contains(f.pageBody) == true)
                t.type("\u{3}")  // now an ordinary Ctrl-C: the run ends
                #expect(t.child.waitExit(timeout: 15) != nil, "fwd run did not end on Ctrl-C")
                return asked + up
            }
            #expect(screen.contains(prompt), "\(screen)")
            #expect(!screen.contains(login.secret), "the password was echoed")
            #expect(f.sshProcesses().isEmpty)
        }
        try await world(.password) { f, login, _ in
            let prompt = "\(login.loginName)@127.0.0.1's password: "
            let exit = try onTerminal(f, ["run", "wiki"]) { t -> ChildExit? in
                _ = t.read(since: 0, timeout: 20) { $0.contains(prompt) }
                t.type("\u{3}")
                return t.child.waitExit(timeout: 15)
            }
            #expect(exit != nil, "fwd run did not end on Ctrl-C at the question")
            #expect(f.sshProcesses().isEmpty, "an ssh is left")
            #expect(login.sshdLog(containing: "Failed password").isEmpty)
            #expect(f.state("wiki") == .down)
        }
    }

    @Test("a question whose ssh exited is withdrawn from the terminal, and the next login asks afresh")
    func withdrawnWhenSSHExits() async throws {
        try await world(.password) { f, login, port in
            let prompt = "\(login.loginName)@127.0.0.1's password: "
            let run = try onTerminal(f, ["up", "wiki"]) { t -> (String, String, ChildExit?) in
                let first = t.read(since: 0, timeout: 20) { $0.contains(prompt) }
                let mark = t.mark
                for pid in f.masters() { kill(pid, SIGKILL) }
                // The desk shows one question at a time: a second one appears only once the first is withdrawn.
                let second = t.read(since: mark, timeout: 20) { $0.contains(prompt) }
                t.type(login.secret + "\r")
                _ = t.read(since: mark, timeout: 30) { $0.contains("wiki: up") }
                return (first, second, t.child.waitExit(timeout: 10))
            }
            #expect(run.0.contains(prompt))
            #expect(run.1.contains(prompt), "the question was not asked again: \(run.1)")
            #expect(run.2 == .exited(0))
            #expect(f.fetchRetrying(port: port)?.body.contains(f.pageBody) == true)
            #expect(login.sshdLog(containing: "Accepted password for \(login.loginName)").count == 1)
        }
    }
}
