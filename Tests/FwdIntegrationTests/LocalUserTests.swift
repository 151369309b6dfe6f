import Foundation
@testable import FwdCore
import FwdLab
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 20, part B, with the real binary, real ssh and a real sshd, and a second local user (`nobody`, through
/// setpriv): the names fwd used to put its sockets under in /tmp capture nothing and stop nothing; the socket
/// directory is one no other user can create or enter; a file at a UNIX-socket listen path survives; a control
/// socket flooded past the descriptor limit does not spin the supervisor; no fwd process can dump core.
/// The tests need root (to act as another uid) and are skipped without it.
@Suite(.serialized) struct LocalUserTests {
    static let other: UInt32 = 65534
    static var canActAsAnotherUser: Bool { geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") }

    /// `argv` run as `nobody`.
    static func asOther(_ argv: [String]) -> [String] {
        ["/usr/bin/setpriv", "--reuid=\(other)", "--regid=\(other)", "--clear-groups", "--"] + argv
    }

    /// A new directory at `path` that belongs to the other user, in `f.dir` opened for them to pass through.
    static func otherUsersDirectory(_ path: String, in f: FwdFixture) throws {
        try FileSystem.makePrivateDirectory(path)
        chown(f.dir, 0, 0)
        chmod(f.dir, 0o711)
        chown(path, other, other)
    }

    static func owner(_ path: String) -> UInt32? {
        var st = stat()
        return lstat(path, &st) == 0 ? st.st_uid : nil
    }

    /// The config of these tests: the lab's sshd and a -L forward to the fixture's web server.
    static func wiki(_ f: FwdFixture, port: Int) -> String {
        "[tunnels.wiki]\nhost = \"lab\"\nlocal = \"\(port):127.0.0.1:\(f.web.port)\"\n"
    }

    /// A fake master: another user listens where the old fwd put the ControlPath (`/tmp/fwd-UID-HASH/HOST`,
    /// both parts computable from /etc/passwd) and records every connection. Before issue 20 a plain
    /// `ssh HOST` after a reboot handed that socket its terminal.
    @Test(.enabled(if: canActAsAnotherUser))
    func anotherUserAtTheOldSocketNamesCapturesNoSessionAndStopsNothing() async throws {
        try await FwdFixture.with { f in
            let port = try LocalPort.free()
            let old = "/tmp/fwd-\(geteuid())-\(String(FwdPaths.fnv1a32(f.stateDir), radix: 16))"
            let trap = f.dir + "/trap"
            try Self.otherUsersDirectory(trap, in: f)
            try? FileManager.default.removeItem(atPath: old)
            defer { try? FileManager.default.removeItem(atPath: old) }
            let fake = """
            import os, socket, sys
            os.makedirs(sys.argv[1], mode=0o777, exist_ok=True); os.chmod(sys.argv[1], 0o777)
            s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1] + "/lab"); os.chmod(sys.argv[1] + "/lab", 0o777); s.listen(8)
            open(sys.argv[2] + "/ready", "w").close()
            while True:
                c, _ = s.accept(); open(sys.argv[2] + "/captured", "a").write("x"); c.close()
            """
            let master = try ChildProcess(Self.asOther(["/usr/bin/python3", "-c", fake, old, trap]), outputPath: trap + "/out")
            defer { master.kill() }
            for _ in 0..<100 where !FileSystem.exists(trap + "/ready") { usleep(50_000) }
            #expect(Self.owner(old) == Self.other, "the other user's directory was not made")

            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            try f.write(config: Self.wiki(f, port: port))
            #expect(try f.fwd("config", "install").ok)
            let up = try f.fwd("up", "wiki")
            #expect(up.ok, "\(up.stdout)\(up.stderr)")
            #expect(f.fetchRetrying(port: port)?.body.contains(f.pageBody) == true)

            // Plain ssh shares fwd's master through the fragment, in a directory of root's that nobody can enter.
            let session = try f.run(["ssh", "-F", f.userSSHConfig, "-o", "BatchMode=yes", "wiki", "echo", "shared"], timeout: 20)
            #expect(session.stdout.contains("shared"), "\(session.stderr)")
            let check = try f.run(["ssh", "-F", f.userSSHConfig, "-O", "check", "wiki"])
            #expect(check.ok, "plain ssh does not share fwd's master: \(check.stderr)")
            let fragment = try #require(FileSystem.read(f.paths.fragment))
            let controlPaths = fragment.split(separator: "\n").filter { $0.contains("ControlPath") }
            #expect(!controlPaths.isEmpty)
            for line in controlPaths { #expect(line.contains(f.paths.controlDirectory + "/"), "\(line)") }
            #expect(!fragment.contains(old))
            #expect(FileSystem.isPrivateDirectory(f.paths.controlDirectory))
            let intrude = try f.run(Self.asOther(["/bin/mkdir", f.paths.controlDirectory + "/x"]))
            #expect(!intrude.ok, "another user could create an entry in the socket directory")
            #expect(!FileSystem.exists(trap + "/captured"), "a session went to the other user's socket")
            _ = try f.fwd("down", "--all")
        }
    }

    /// After `su` or `sudo -E`, XDG_RUNTIME_DIR may be another user's: fwd does not put its sockets there.
    @Test(.enabled(if: canActAsAnotherUser))
    func anotherUsersRuntimeDirectoryIsNotUsed() async throws {
        try await FwdFixture.with { f in
            let runtime = f.dir + "/run-user"
            try Self.otherUsersDirectory(runtime, in: f)
            let port = try LocalPort.free()
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            try f.write(config: Self.wiki(f, port: port))
            let up = try f.fwd(arguments: ["up", "wiki"], environment: ["XDG_RUNTIME_DIR": runtime])
            #expect(up.ok, "\(up.stdout)\(up.stderr)")
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: runtime)) ?? []).isEmpty)
            #expect(FileSystem.read(f.paths.fragment)?.contains("ControlPath \(f.stateDir)/run/") == true)
            _ = try f.fwd(arguments: ["down", "--all"], environment: ["XDG_RUNTIME_DIR": runtime])
        }
    }

    /// A socket directory that is not the user's (here FWD_RUNTIME_DIR names one of nobody's) is refused with
    /// a fix the user can carry out, the fragment names no ControlPath meanwhile, and the fix works.
    @Test(.enabled(if: canActAsAnotherUser))
    func aForeignSocketDirectoryIsRefusedWithAFixThatWorks() async throws {
        try await FwdFixture.with { f in
            let sockets = f.dir + "/sockets"
            try Self.otherUsersDirectory(sockets, in: f)
            let port = try LocalPort.free()
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            try f.write(config: Self.wiki(f, port: port))
            let env: [String: String?] = ["FWD_RUNTIME_DIR": sockets]
            let up = try f.fwd(arguments: ["up", "wiki"], environment: env)
            #expect(!up.ok)
            #expect(up.stderr.contains("\(sockets): it belongs to uid \(Self.other)"), "\(up.stderr)")
            #expect(up.stderr.contains("mv \(sockets) \(sockets).old"), "\(up.stderr)")
            let print = try f.fwd(arguments: ["config", "print"], environment: env)
            #expect(!print.ok)
            #expect(FileSystem.read(f.paths.fragment).map { !$0.contains("ControlPath") && !$0.contains("ControlMaster") } == true,
                    "the fragment names a ControlPath in a foreign directory")
            #expect(Self.owner(sockets) == Self.other, "fwd changed a directory it did not create")
            #expect(rename(sockets, sockets + ".old") == 0)
            let again = try f.fwd(arguments: ["up", "wiki"], environment: env)
            #expect(again.ok, "\(again.stdout)\(again.stderr)")
            #expect(FileSystem.read(f.paths.fragment)?.contains("ControlPath \(sockets)/lab") == true)
            _ = try f.fwd(arguments: ["down", "--all"], environment: env)
        }
    }

    /// A regular file at a UNIX-socket listen path keeps its bytes and the tunnel fails naming it; a stale
    /// socket there (its listener died without unlinking it) is replaced, and the forward serves.
    @Test func aFileAtASocketListenPathSurvivesAndAStaleSocketIsReplaced() async throws {
        try await FwdFixture.with { f in
            let path = f.dir + "/wiki.sock"
            let data = Array("notes that must survive\n".utf8)
            try FileSystem.writeAtomically(data, to: path, mode: 0o644)
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            try f.write(config: "[tunnels.wiki]\nhost = \"lab\"\nlocal = \"\(path):127.0.0.1:\(f.web.port)\"\nprobe = \"tcp\"\n")
            let up = try f.fwd("up", "wiki")
            #expect(!up.ok)
            #expect((up.stdout + up.stderr).contains("\(path) is already taken"), "\(up.stdout)\(up.stderr)")
            #expect(FileSystem.readBytes(path) == data, "the file at the listen path was replaced")

            unlink(path)
            let stale = try UnixSocket.listen(path: path, backlog: 1, nonBlocking: false)
            stale.close()
            #expect(UnixSocket.removeStale(path) == .staleSocket)
            let listener = try UnixSocket.listen(path: path, backlog: 1, nonBlocking: false)
            listener.close()
            let second = try f.fwd("up", "wiki")
            #expect(second.ok, "\(second.stdout)\(second.stderr)")
            let page = try f.run(["curl", "-s", "--max-time", "5", "--unix-socket", path, "http://x/"])
            #expect(page.stdout.contains(f.pageBody), "\(page.stderr)")
            // Only its user can connect (the README's Security table says so): ssh binds it 0600.
            #expect(FileSystem.mode(of: path) == 0o600)
            _ = try f.fwd("down", "--all")
        }
    }

    /// Out of descriptors, accept fails with EMFILE while the listener stays readable: the supervisor must
    /// pause rather than spin (it used about 90 % of a core), and answer again once clients go.
    @Test func aFloodOfControlClientsPastTheDescriptorLimitDoesNotSpinTheSupervisor() async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            try f.write(config: Self.wiki(f, port: try LocalPort.free()))
            // The supervisor inherits the limit from the `fwd up` that starts it.
            let up = try f.run(["prlimit", "--nofile=48:48", FwdFixture.binary, "up", "wiki"])
            #expect(up.ok, "\(up.stdout)\(up.stderr)")
            let pid = try #require(f.supervisorProcesses().first)
            let flood = """
            import socket, sys, time
            held = []
            for _ in range(200):
                s = socket.socket(socket.AF_UNIX); s.setblocking(False)
                try: s.connect(sys.argv[1])
                except BlockingIOError: pass
                except OSError: break
                held.append(s)
            print(len(held), flush=True); time.sleep(float(sys.argv[2]))
            """
            let out = f.dir + "/flood.out"
            let clients = try ChildProcess(["/usr/bin/python3", "-c", flood, f.paths.supervisorSocket, "4"], outputPath: out)
            defer { clients.kill() }
            for _ in 0..<50 where (FileSystem.read(out) ?? "").isEmpty { usleep(50_000) }
            let before = try #require(ProcessTable.cpuSeconds(of: pid))
            try await Task.sleep(for: .seconds(2))
            let used = try #require(ProcessTable.cpuSeconds(of: pid)) - before
            print("fwd flood: the supervisor (48 descriptors) used \(used) s of CPU in 2 s with \((FileSystem.read(out) ?? "?").trimmingCharacters(in: .whitespacesAndNewlines)) clients connected")
            #expect(used < 0.3, "the supervisor used \(used) s of CPU in 2 s with \(FileSystem.read(out) ?? "?") clients waiting")
            _ = clients.waitExit(timeout: 10)
            let status = try f.fwd("status", "wiki")
            #expect(status.ok, "\(status.stderr)")
            _ = try f.fwd("down", "--all")
        }
    }

    /// Processes that may hold a typed answer cannot dump core, and other processes of the same user cannot
    /// read their memory: the supervisor (run as `nobody` here, so that the kernel's ownership shows it) has
    /// a zero core limit and is not dumpable (its /proc files belong to root).
    @Test(.enabled(if: canActAsAnotherUser))
    func fwdProcessesCannotDumpCore() async throws {
        try await FwdFixture.with { f in
            let home = f.dir + "/nobody"
            try Self.otherUsersDirectory(home, in: f)
            try FileSystem.writeAtomically("[tunnels.x]\nhost = \"lab\"\nlocal = \"1:127.0.0.1:1\"\n", to: home + "/fwd.toml")
            chown(home + "/fwd.toml", Self.other, Self.other)
            let daemon = try ChildProcess(Self.asOther(["/usr/bin/env", "-i", "HOME=\(home)", "FWD_CONFIG=\(home)/fwd.toml",
                                                        "FWD_STATE_DIR=\(home)/state", "FWD_SSH_CONFIG=\(home)/ssh_config",
                                                        FwdFixture.binary, "daemon"]), outputPath: home + "/daemon.out")
            defer { daemon.kill() }
            for _ in 0..<100 where !FileSystem.exists(home + "/state/run/fwd.sock") { usleep(50_000) }
            #expect(FileSystem.exists(home + "/state/run/fwd.sock"), "\(FileSystem.read(home + "/daemon.out") ?? "")")
            let limits = FileSystem.read("/proc/\(daemon.pid)/limits") ?? ""
            #expect(limits.split(separator: "\n").contains { $0.hasPrefix("Max core file size") && $0.split(separator: " ").contains("0") },
                    "\(limits)")
            #expect(ProcessTable.uid(of: daemon.pid) == Self.other)
            #expect(Self.owner("/proc/\(daemon.pid)/environ") == 0, "the supervisor is dumpable")
        }
    }
}
