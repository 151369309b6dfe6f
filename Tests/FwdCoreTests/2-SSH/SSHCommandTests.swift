import Foundation
import Testing
@testable import FwdCore

@Suite struct SSHCommandTests {
    let sock = "/tmp/fwd-0-abc/0123456789abcdef0123456789abcdef01234567"

    @Test func master() {
        let c = SSHCommand.master(config: "/s/ssh_config", destination: Destination("office"), socket: sock,
                                  liveness: .init(aliveInterval: 1, aliveCount: 2, connectTimeout: 5))
        #expect(c.argv == [
            "ssh", "-F", "/s/ssh_config", "-N", "-M", "-S", sock,
            "-o", "ControlPersist=no", "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes",
            "-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2", "-o", "ConnectTimeout=5",
            "--", "office",
        ])
    }

    @Test func masterThatMayNeedAPersonDropsOnlyBatchMode() {
        let batch = SSHCommand.master(config: "/s/ssh_config", destination: Destination("office"), socket: sock, liveness: .init())
        let person = SSHCommand.master(config: "/s/ssh_config", destination: Destination("office"), socket: sock, liveness: .init(),
                                       batchMode: false)
        #expect(person.argv == batch.argv.map { $0 == "BatchMode=yes" ? "BatchMode=no" : $0 })
        #expect(person.argv.contains("BatchMode=no"))
    }

    @Test func destinationWithPortGoesThroughAnOption() {
        #expect(Destination("alice@a.example.com:2222") == Destination(host: "alice@a.example.com", port: 2222))
        #expect(Destination("alice@[2001:db8::1]:2222") == Destination(host: "alice@2001:db8::1", port: 2222))
        #expect(Destination("[::1]") == Destination(host: "::1"))
        #expect(Destination("::1") == Destination(host: "::1"))
        #expect(Destination("office") == Destination(host: "office"))
        #expect(Destination("bob@h").arguments == ["--", "bob@h"])
        #expect(Destination("h:2200").arguments == ["-o", "Port=2200", "--", "h"])
    }

    @Test func muxCommandsUseNoConfigAndTheExactSpec() throws {
        let spec = try ForwardSpec.parse("8080:wiki.lan:80", kind: .local)
        #expect(SSHCommand.mux(socket: sock, .forward(spec)).argv ==
            ["ssh", "-F", "none", "-S", sock, "-O", "forward", "-L", "127.0.0.1:8080:wiki.lan:80", "fwd-mux"])
        #expect(SSHCommand.mux(socket: sock, .cancel(spec)).argv ==
            ["ssh", "-F", "none", "-S", sock, "-O", "cancel", "-L", "127.0.0.1:8080:wiki.lan:80", "fwd-mux"])
        let remote = try ForwardSpec.parse("0:localhost:22", kind: .remote)
        #expect(SSHCommand.mux(socket: sock, .forward(remote)).arguments.suffix(3) == ["-R", "127.0.0.1:0:localhost:22", "fwd-mux"])
        let socks = try ForwardSpec.parse("1080", kind: .dynamic)
        #expect(SSHCommand.mux(socket: sock, .forward(socks)).arguments.suffix(3) == ["-D", "127.0.0.1:1080", "fwd-mux"])
        #expect(SSHCommand.mux(socket: sock, .check).argv == ["ssh", "-F", "none", "-S", sock, "-O", "check", "fwd-mux"])
        #expect(SSHCommand.mux(socket: sock, .exit).argv == ["ssh", "-F", "none", "-S", sock, "-O", "exit", "fwd-mux"])
    }

    @Test func resolve() {
        #expect(SSHCommand.resolve(ssh: "/usr/bin/ssh", config: "/s/ssh_config", destination: Destination("bob@h:22")).argv == [
            "/usr/bin/ssh", "-F", "/s/ssh_config", "-G", "-T", "-o", "Port=22", "--", "bob@h",
        ])
    }

    @Test func controlPathFitsTheSocketLimit() throws {
        // The master binds PATH + "." + 16 random characters (90 bytes on Linux, about 86 on macOS). Names are
        // hashed where the directory leaves less than 40 bytes; a directory too long even for a hash is refused.
        for state in ["/home/someone-with-a-long-name/.local/state/fwd", "/s/" + String(repeating: "x", count: 60)] {
            let paths = FwdPaths(config: "/c", stateDirectory: state, userSSHConfig: "/u", environment: [:])
            #expect(paths.controlDirectory == state + "/run")
            for host in ["lab", "bob@very-long-host-name.example.com:2222", String(repeating: "h", count: 200), "a%C", "ünï", ".hidden", "ask-x"] {
                let socket = paths.controlSocket(for: host)
                #expect(socket.hasPrefix(paths.controlDirectory + "/"))
                #expect(socket.utf8.count <= FwdPaths.controlPathLimit, "\(socket)")
                #expect(!socket.dropFirst(paths.controlDirectory.count + 1).hasPrefix(AskpassRelay.socketPrefix))
            }
        }
        let long = FwdPaths(config: "/c", stateDirectory: "/s/" + String(repeating: "x", count: 200), userSSHConfig: "/u", environment: [:])
        #expect("\(FileSystem.socketDirectoryProblem(long.controlDirectory).map { "\($0)" } ?? "")".contains("FWD_RUNTIME_DIR"))
    }

    @Test func socketDirectoryIsPrivateRuntimeDirectoryOrStateRun() throws {
        let dir = NSTemporaryDirectory() + "fwd-rt-\(UUID().uuidString.prefix(6))"
        try FileSystem.makePrivateDirectory(dir + "/runtime")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let runtime = ["XDG_RUNTIME_DIR": dir + "/runtime"]
        let a = FwdPaths.controlDirectory(forState: "/a", environment: runtime)
        #expect(a.hasPrefix(dir + "/runtime/fwd-"))
        #expect(a != FwdPaths.controlDirectory(forState: "/b", environment: runtime))
        // A runtime directory others can enter (or another user's, after su) is not used.
        chmod(dir + "/runtime", 0o755)
        #expect(FwdPaths.controlDirectory(forState: "/a", environment: runtime) == "/a/run")
        #expect(FwdPaths.controlDirectory(forState: "/a", environment: ["XDG_RUNTIME_DIR": "relative"]) == "/a/run")
        #expect(FwdPaths.controlDirectory(forState: "/a", environment: ["FWD_RUNTIME_DIR": "/r", "XDG_RUNTIME_DIR": dir]) == "/r")
    }

    @Test func socketNamesAreReadableWhenPlainAndDistinctPerHost() {
        let paths = FwdPaths(config: "/c", stateDirectory: "/s", userSSHConfig: "/u")
        #expect(paths.controlSocket(for: "office-1.lan") == paths.controlDirectory + "/office-1.lan")
        // Anything ssh_config would expand (%, ~) or that could escape the directory is hashed.
        // So is a name that would take the supervisor's own socket.
        for host in ["bob@h:22", "a%C", "~x", "..", "a/b", "fwd.sock"] {
            let name = String(paths.controlSocket(for: host).dropFirst(paths.controlDirectory.count + 1))
            #expect(name.hasPrefix("@") && name.count == 17, "\(host) → \(name)")
        }
        let hosts = ["lab", "lab2", "bob@h", "bob@h:22", "Lab"]
        #expect(Set(hosts.map(paths.controlSocket(for:))).count == hosts.count)
    }

    @Test func displayQuotesForTheShell() {
        #expect(SSHCommand(executable: "ssh", arguments: ["-o", "A=b c", "it's"]).description == "ssh -o 'A=b c' 'it'\\''s'")
    }
}

@Suite struct SSHFailureTests {
    @Test(arguments: [
        ("root@127.0.0.1: Permission denied (publickey).", FailureClass.fatal),
        ("Host key verification failed.", .fatal),
        ("@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @", .fatal),
        ("/home/a/.ssh/config: line 3: Bad configuration option: foo", .fatal),
        ("Bad local forwarding specification 'x'", .fatal),
        ("ssh: connect to host 127.0.0.1 port 2222: Connection refused", .retry),
        ("ssh: connect to host 10.0.0.1 port 22: Connection timed out", .retry),
        ("ssh: connect to host h port 22: Network is unreachable", .retry),
        ("Timeout, server 127.0.0.1 not responding.", .retry),
        ("Connection to 127.0.0.1 closed by remote host.", .retry),
        ("client_loop: send disconnect: Broken pipe", .retry),
        ("ssh: Could not resolve hostname nope: Temporary failure in name resolution", .retry),
        ("bind [127.0.0.1]:8080: Address already in use", .localConflict),
        ("channel_setup_fwd_listener_tcpip: cannot listen to port: 8080", .localConflict),
        ("Could not request local forwarding.", .localConflict),
        ("mux_client_forward: forwarding request failed: Port forwarding failed", .localConflict),
        ("Error: remote port forwarding failed for listen port 15432", .remoteListener),
    ])
    func classifies(_ line: String, _ expected: FailureClass) {
        let failure = SSHFailure.classify(stderr: "debug noise\r\n\(line)\r\n", status: 255)
        #expect(failure.failureClass == expected)
        #expect(failure.evidence == line)
        #expect(!failure.advice.isEmpty)
    }

    @Test func permissionDeniedAdviceFollowsWhatTheServerAccepts() {
        let key = SSHFailure.classify(stderr: "u@h: Permission denied (publickey).\r\n", status: 255).advice
        #expect(key.contains("load the key into your agent"))
        let password = SSHFailure.classify(stderr: "u@h: Permission denied (password).\r\n", status: 255).advice
        #expect(!password.contains("agent") && !password.contains("key"), "\(password)")
        #expect(password.contains("wants a password") && password.contains("`fwd up NAME` on a terminal"))
        let either = SSHFailure.classify(stderr: "u@h: Permission denied (publickey,password).\r\n", status: 255).advice
        #expect(either.contains("wants a password") && either.contains("a key it accepts"), "\(either)")
        #expect(!either.contains("load the key into your agent"))
        let code = SSHFailure.classify(stderr: "u@h: Permission denied (keyboard-interactive).\r\n", status: 255).advice
        #expect(code.contains("one-time code"), "\(code)")
    }

    @Test func hostKeyChangeWinsOverTheLinesAroundIt() {
        let stderr = """
        @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
        @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
        Host key verification failed.
        """
        let f = SSHFailure.classify(stderr: stderr, status: 255)
        #expect(f.failureClass == .fatal)
        #expect(f.advice.contains("ssh-keygen -R"))
    }

    /// OpenSSH 9.2's own lines for a changed key on port 2299 (CR LF as ssh writes them): the advice names the
    /// known_hosts entry as `[host]:port`, which a plain `ssh-keygen -R HOST` would miss.
    @Test func hostKeyAdviceNamesTheEntrySSHPrinted() {
        let lines = [
            "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @", "Offending ED25519 key in /tmp/lab/kh2:1",
            "  remove with:", "  ssh-keygen -f \"/tmp/lab/kh2\" -R \"[127.0.0.1]:2299\"",
            "Host key for [127.0.0.1]:2299 has changed and you have requested strict checking.", "Host key verification failed.",
        ]
        let f = SSHFailure.classify(stderr: lines.joined(separator: "\r\n"), status: 255)
        #expect(f.failureClass == .fatal)
        #expect(f.advice.hasSuffix("`ssh-keygen -f \"/tmp/lab/kh2\" -R \"[127.0.0.1]:2299\"`"), "\(f.advice)")
        // Without the `remove with` lines (older ssh), the name comes from "Host key for … has changed".
        let older = SSHFailure.classify(stderr: [lines[0], lines[4]].joined(separator: "\n"), status: 255)
        #expect(older.advice.hasSuffix("`ssh-keygen -R '[127.0.0.1]:2299'`"), "\(older.advice)")
    }

    /// A master's log also holds one line per forwarded connection that failed to open (a target that is down, fwd's
    /// transport check): those say nothing about why the master itself ended.
    @Test func channelOpenFailuresAreNotTheMastersFailure() {
        let stderr = "channel 3: open failed: connect failed: Connection refused\r\nTimeout, server sshd-a not responding.\r\n"
        let f = SSHFailure.classify(stderr: stderr, status: 255)
        #expect(f.evidence == "Timeout, server sshd-a not responding.")
        #expect(SSHFailure.classify(stderr: "channel 2: open failed: connect failed: Connection refused\r\n", status: 0).evidence
            == "ssh exited with status 0")
    }

    @Test func unknownFailureIsRetried() {
        #expect(SSHFailure.classify(stderr: "", status: 255).failureClass == .retry)
        #expect(SSHFailure.classify(stderr: "", status: 255).evidence == "ssh exited with status 255")
    }
}
