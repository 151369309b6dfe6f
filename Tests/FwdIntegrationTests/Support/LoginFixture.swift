import Foundation
@testable import FwdCore
import FwdLab
import FwdTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A local user that exists for one test only, with a random password: an sshd with `UsePAM no` checks
/// /etc/shadow, so a password login needs a real account. Needs root; `remove()` deletes it.
final class ThrowawayUser: @unchecked Sendable {
    let name: String
    let password: String

    static var canCreate: Bool { geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/useradd") }

    /// `scratch` is a private directory for the password file chpasswd reads (removed at once): the password
    /// never appears in an argv or an environment.
    init(scratch: String) throws {
        name = "fwdt\(UUID().uuidString.prefix(8).lowercased())"
        password = "pw-" + UUID().uuidString
        try Self.run(["/usr/sbin/useradd", "-M", "-N", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", "-c", "fwd test user", name])
        let file = scratch + "/chpasswd.in"
        defer { unlink(file) }
        try FileSystem.writeAtomically("\(name):\(password)\n", to: file)
        try Self.run(["/bin/sh", "-c", "exec /usr/sbin/chpasswd < \"$0\"", file])
    }

    func remove() {
        _ = try? ChildProcess.run(["/usr/sbin/userdel", name], timeout: 10)
    }

    private static func run(_ argv: [String]) throws {
        let (exit, output) = try ChildProcess.run(argv, timeout: 20)
        guard exit == .exited(0) else { throw ChildProcessError(description: "\(argv.joined(separator: " ")): \(exit) \(output)") }
    }
}

/// A real sshd set up for one way of logging in that needs a person, plus the client side a master needs:
/// an ssh_config whose `login` host uses only that way, no agent, and a known_hosts. `startMaster` runs a real
/// `ssh -N -M` without BatchMode, in a session of its own, with an `AskpassRelay`'s environment.
final class LoginFixture: @unchecked Sendable {
    enum Kind: Sendable {
        /// `PasswordAuthentication yes` for a throwaway user.
        case password
        /// `UsePAM yes`, keyboard-interactive, and a PAM stack of its own with pam_google_authenticator.
        case oneTimeCode
        /// A passphrase-protected key, no agent.
        case passphraseKey
        /// An empty known_hosts and `StrictHostKeyChecking ask` (ssh's default).
        case firstContact
    }

    static let pamModule = "pam_google_authenticator.so"
    static let oathtool = "/usr/bin/oathtool"

    /// Why `kind` cannot run here, or nil when it can (tests skip with this message).
    static func unavailable(_ kind: Kind) -> String? {
        if !FileManager.default.isExecutableFile(atPath: LabSSHD.sshdPath) { return "sshd is missing: apt-get install openssh-server" }
        switch kind {
        case .password, .oneTimeCode:
            if !ThrowawayUser.canCreate { return "creating a throwaway login user needs root (useradd)" }
            if kind == .oneTimeCode {
                if pamModulePath == nil || !FileManager.default.isExecutableFile(atPath: oathtool) {
                    return "one-time codes need libpam-google-authenticator and oathtool (apt-get install libpam-google-authenticator oathtool)"
                }
                if !FileManager.default.isWritableFile(atPath: "/etc/pam.d") { return "a private PAM service needs a writable /etc/pam.d (root)" }
            }
            return nil
        case .passphraseKey, .firstContact:
            return nil
        }
    }

    static var pamModulePath: String? {
        let dirs = ["/lib/x86_64-linux-gnu/security", "/usr/lib/x86_64-linux-gnu/security", "/lib/aarch64-linux-gnu/security",
                    "/usr/lib/aarch64-linux-gnu/security", "/lib/security", "/usr/lib/security", "/lib64/security"]
        return dirs.map { "\($0)/\(pamModule)" }.first { FileManager.default.fileExists(atPath: $0) }
    }

    let kind: Kind
    let dir: String
    let sshd: LabSSHD
    let user: ThrowawayUser?
    /// The login name the client uses.
    let loginName: String
    /// The password, the key's passphrase, or the TOTP secret (base32).
    let secret: String
    let identity: String
    let knownHosts: String
    let clientConfig: String
    /// Short: ControlPath and the relay socket must fit in sun_path.
    let socketDirectory: String
    var controlSocket: String { socketDirectory + "/m" }
    var masterLog: String { dir + "/master.log" }
    private let pamService: String?

    private init(kind: Kind) throws {
        self.kind = kind
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-login-\(UUID().uuidString.prefix(8))").path
        socketDirectory = "/tmp/fwd-l-\(UUID().uuidString.prefix(6).lowercased())"
        try FileSystem.makePrivateDirectory(dir)
        try FileSystem.makeSocketDirectory(socketDirectory)
        knownHosts = dir + "/client_known_hosts"
        clientConfig = dir + "/ssh_config"

        var extra: [String] = []
        var executable = LabSSHD.sshdPath
        var user: ThrowawayUser?
        var service: String?
        var secret = ""
        var identity = "none"
        switch kind {
        case .password:
            user = try ThrowawayUser(scratch: dir)
            secret = user!.password
            extra = ["PasswordAuthentication yes", "UsePAM no", "MaxAuthTries 10"]
        case .oneTimeCode:
            user = try ThrowawayUser(scratch: dir)
            // sshd takes its PAM service name from the name it was started by
            // (docs/architecture.md, "Logins that need a person").
            let name = "sshd-fwdotp-\(UUID().uuidString.prefix(6).lowercased())"
            service = name
            executable = dir + "/" + name
            try FileManager.default.createSymbolicLink(atPath: executable, withDestinationPath: LabSSHD.sshdPath)
            let totp = Self.randomBase32(bytes: 20)
            secret = totp
            let secretFile = dir + "/google_authenticator"
            try FileSystem.writeAtomically("\(totp)\n\" TOTP_AUTH\n", to: secretFile)
            chmod(secretFile, 0o600)
            // Text before the prompt travels inside the prompt; text after a failed answer arrives as
            // keyboard-interactive instructions, which ssh writes to stderr.
            let stack = """
            auth optional pam_echo.so Open your authenticator app for user %u
            auth required \(Self.pamModule) secret=\(secretFile) user=root
            auth optional pam_echo.so That code was not accepted.
            account required pam_permit.so
            session required pam_permit.so

            """
            try FileSystem.writeAtomically(stack, to: "/etc/pam.d/\(name)")
            chmod("/etc/pam.d/\(name)", 0o644)
            extra = ["UsePAM yes", "KbdInteractiveAuthentication yes", "PasswordAuthentication no", "MaxAuthTries 10"]
        case .passphraseKey:
            secret = "phrase-" + UUID().uuidString.prefix(12)
        case .firstContact:
            break
        }
        self.user = user
        self.pamService = service
        self.secret = secret
        do {
            sshd = try LabSSHD(dir: dir + "/sshd", extraConfig: extra, executable: executable)
        } catch {
            user?.remove()
            if let service { unlink("/etc/pam.d/\(service)") }
            throw error
        }
        loginName = user?.name ?? sshd.user

        var methods = "password"
        var hostKeyChecking = "yes"
        switch kind {
        case .password: methods = "password"
        case .oneTimeCode: methods = "keyboard-interactive"
        case .passphraseKey:
            identity = dir + "/protected_ed25519"
            let (exit, output) = try ChildProcess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", secret, "-C", "fwd-login", "-f", identity])
            guard exit == .exited(0) else { throw ChildProcessError(description: "ssh-keygen: \(output)") }
            let pub = try String(contentsOfFile: identity + ".pub", encoding: .utf8)
            try FileSystem.writeAtomically(pub, to: sshd.dir + "/authorized_keys")
            methods = "publickey"
        case .firstContact:
            identity = sshd.clientKey
            methods = "publickey"
            hostKeyChecking = "ask"
        }
        self.identity = identity
        if kind == .firstContact {
            try FileSystem.writeAtomically("", to: knownHosts)
        } else {
            try FileSystem.writeAtomically(try String(contentsOfFile: sshd.knownHosts, encoding: .utf8), to: knownHosts)
        }
        let config = """
        Host login
            HostName 127.0.0.1
            Port \(sshd.port)
            User \(loginName)
            IdentityFile \(identity)
            IdentitiesOnly yes
            IdentityAgent none
            PreferredAuthentications \(methods)
            UserKnownHostsFile \(knownHosts)
            GlobalKnownHostsFile /dev/null
            StrictHostKeyChecking \(hostKeyChecking)
            UpdateHostKeys no

        """
        try FileSystem.writeAtomically(config, to: clientConfig)
    }

    static func with<T>(_ kind: Kind, _ body: (LoginFixture) async throws -> T) async throws -> T {
        let fixture = try LoginFixture(kind: kind)
        defer { fixture.tearDown() }
        try fixture.sshd.start()
        return try await body(fixture)
    }

    private func tearDown() {
        for pid in ProcessTable.allPids() where ProcessTable.commandLine(of: pid).contains(controlSocket) {
            ProcessTable.terminate(pid, grace: 0.5)
        }
        sshd.stop()
        user?.remove()
        if let pamService { unlink("/etc/pam.d/\(pamService)") }
        try? FileManager.default.removeItem(atPath: dir)
        try? FileManager.default.removeItem(atPath: socketDirectory)
    }

    /// A relay for this fixture's master; its socket sits beside the ControlPath.
    func makeRelay() throws -> AskpassRelay {
        try AskpassRelay(directory: socketDirectory, askpassProgram: FwdBinary.path)
    }

    /// The master as fwd builds it, without BatchMode, with the relay's environment; attached to the relay.
    func startMaster(relay: AskpassRelay, host: String = "login") async throws -> ControlMaster {
        let command = SSHCommand.master(config: clientConfig, destination: Destination(host: host), socket: controlSocket,
                                        liveness: .init(aliveInterval: 5, aliveCount: 3, connectTimeout: 5), batchMode: false)
        let master = try await ControlMaster.spawn(command, socket: controlSocket, logPath: masterLog, environment: relay.environment)
        relay.attach(masterPid: master.pid, stderrLog: master.logPath, stderrOffset: master.logOffset) { master.terminate() }
        return master
    }

    /// Whether the master answers `ssh -O check` (it has logged in and listens on its socket).
    func masterIsUp() -> Bool {
        guard FileManager.default.fileExists(atPath: controlSocket) else { return false }
        let check = SSHCommand.mux(socket: controlSocket, .check)
        return (try? ChildProcess.run(check.argv, timeout: 5).exit) == .exited(0)
    }

    func waitForMaster(timeout: Double = 10) -> Bool {
        Poll.until(timeout: timeout, every: 0.05) { masterIsUp() } != nil
    }

    /// The current TOTP code for the one-time-code server.
    func code() throws -> String {
        let (exit, output) = try ChildProcess.run([Self.oathtool, "--totp", "-b", secret])
        guard exit == .exited(0) else { throw ChildProcessError(description: "oathtool: \(output)") }
        return output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A code that is certainly wrong now.
    func wrongCode() throws -> String {
        String(format: "%06d", (Int(try code())! + 500_000) % 1_000_000)
    }

    /// The SHA256 fingerprint of the server's host key, as ssh prints it.
    func hostKeyFingerprint() throws -> String {
        let (_, output) = try ChildProcess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", sshd.dir + "/hostkey.pub"])
        return output.split(separator: " ").first { $0.hasPrefix("SHA256:") }.map(String.init) ?? ""
    }

    /// sshd log lines since `offset` that match `needle`.
    func sshdLog(containing needle: String, since offset: Int = 0) -> [Substring] {
        sshd.log().dropFirst(offset).split(whereSeparator: \.isNewline).filter { $0.contains(needle) }
    }

    private static func randomBase32(bytes count: Int) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        let bytes = (0..<count).map { _ in UInt8.random(in: 0...255) }
        var bits = 0, value = 0, out = ""
        for byte in bytes {
            value = (value << 8) | Int(byte)
            bits += 8
            while bits >= 5 {
                out.append(alphabet[(value >> (bits - 5)) & 31])
                bits -= 5
            }
        }
        if bits > 0 { out.append(alphabet[(value << (5 - bits)) & 31]) }
        return out
    }
}

/// Collects a relay's events so a test can wait for the next one with a deadline.
final class RelayEvents: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [AskpassEvent] = []
    private var taken = 0
    private var task: Task<Void, Never>?

    init(_ relay: AskpassRelay) {
        task = Task { [weak self] in
            for await event in relay.events { self?.append(event) }
        }
    }

    deinit { task?.cancel() }

    private func append(_ event: AskpassEvent) { lock.withLock { events.append(event) } }

    func next(timeout: Double = 10) async -> AskpassEvent? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let event: AskpassEvent? = lock.withLock {
                guard taken < events.count else { return nil }
                taken += 1
                return events[taken - 1]
            }
            if let event { return event }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }

    /// The next event, which must be a prompt.
    func prompt(timeout: Double = 10) async -> LoginPrompt? {
        if case .prompt(let prompt) = await next(timeout: timeout) { return prompt }
        return nil
    }

    var all: [AskpassEvent] { lock.withLock { events } }
}
