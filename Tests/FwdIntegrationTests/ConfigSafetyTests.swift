import Foundation
@testable import FwdCore
import FwdLab
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 20, part A, with the real binary, real ssh and a real sshd: nothing in fwd.toml reaches a shell, the
/// files fwd edits keep what they are, and a tunnel's name never takes over the user's own `ssh NAME`.
@Suite(.serialized) struct ConfigSafetyTests {
    /// What `ssh -G` prints for `host` with `config`, as keyword → values.
    static func resolved(_ f: FwdFixture, config: String, host: String) throws -> ResolvedHost {
        let run = try f.run(["ssh", "-F", config, "-G", host])
        #expect(run.ok, "ssh -G \(host): \(run.stderr)")
        return ResolvedHost(parsing: run.stdout)
    }

    /// The commands and libraries ssh can run from a config; each must be ssh's default in what fwd generates.
    static let commandKeywords = ["proxycommand", "localcommand", "knownhostscommand", "remotecommand", "xauthlocation",
                                  "pkcs11provider", "securitykeyprovider"]

    /// The pair from the issue (ProxyJump with `%k` and a HostKeyAlias that is a shell command) and the other
    /// options the deny-list let through: `fwd up` refuses each at file:line:col and runs nothing; the fragment
    /// a previous, valid config left is neither replaced nor able to run anything through plain ssh.
    @Test func hostileOptionsAreRefusedAndNothingRuns() async throws {
        try await FwdFixture.with { f in
            let marker = f.dir + "/pwned"
            let script = f.dir + "/xauth"
            try FileSystem.writeAtomically("#!/bin/sh\ntouch \(marker)\n", to: script, mode: 0o700)
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            let valid = """
            [hosts.office]
            hostname = "127.0.0.1"
            port = \(f.sshd.port)

            [tunnels.x]
            host = "office"
            local = "1:127.0.0.1:1"

            """
            try f.write(config: valid)
            #expect(try f.fwd("config", "install").ok)
            let goodFragment = try #require(FileSystem.read(f.stateDir + "/ssh_config.fwd"))

            let hostile: [(String, String)] = [
                ("jump = \"j%k\"\noptions = { HostKeyAlias = \"a|id>\(marker)\" }", "jump"),
                ("options = { HostKeyAlias = \"a|id>\(marker)\" }", "HostKeyAlias"),
                ("jump = \"lab%k\"", "jump"),
                ("options = { XAuthLocation = \"\(script)\" }", "XAuthLocation"),
                ("options = { NoHostAuthenticationForLocalhost = \"yes\" }", "NoHostAuthenticationForLocalhost"),
                ("options = { VerifyHostKeyDNS = \"yes\" }", "VerifyHostKeyDNS"),
                ("options = { StreamLocalBindMask = \"0000\" }", "StreamLocalBindMask"),
                ("options = { ForkAfterAuthentication = \"yes\" }", "ForkAfterAuthentication"),
                ("options = { KnownHostsCommand = \"\(script)\" }", "KnownHostsCommand"),
                ("options = { Compression = \"yes;touch \(marker)\" }", "Compression"),
                ("options = { Ciphers = \"$(touch \(marker))\" }", "Ciphers"),
                ("options = { SendEnv = \"%k\" }", "SendEnv"),
                ("user = \"a$(id)\"", "user"),
            ]
            for (lines, what) in hostile {
                let text = valid.replacingOccurrences(of: "port = \(f.sshd.port)\n", with: "port = \(f.sshd.port)\n\(lines)\n")
                try f.write(config: text)
                let up = try f.fwd("up", "x")
                #expect(!up.ok, "fwd up accepted \(lines)")
                // Line 4 is the first added line: the error names it, and its column.
                #expect(up.stderr.range(of: #"\#(f.configPath):(4|5):\d+: "#, options: .regularExpression) != nil, "\(what): \(up.stderr)")
                #expect(up.stderr.contains(what), "\(what): \(up.stderr)")
                #expect(FileSystem.read(f.stateDir + "/ssh_config.fwd") == goodFragment, "\(what): the fragment was rewritten")
            }
            // Plain ssh on the fragment that is installed: nothing to run, and a connection attempt runs nothing.
            let defaults = try Self.resolved(f, config: "none", host: "x")
            for host in ["office", "x"] {
                let r = try Self.resolved(f, config: f.userSSHConfig, host: host)
                for keyword in Self.commandKeywords {
                    #expect(r.value(keyword) == defaults.value(keyword), "\(host): \(keyword) \(r.value(keyword) ?? "")")
                }
                _ = try f.run(["ssh", "-F", f.userSSHConfig, "-o", "BatchMode=yes", "-o", "ConnectTimeout=2", host, "true"], timeout: 20)
            }
            #expect(!FileSystem.exists(marker), "a command ran")
            _ = try f.fwd("daemon", "--stop")
        }
    }

    /// `fwd config install` on a dotfile manager's symlink edits the target (the link stays a link), and
    /// uninstall gives the target back byte for byte; a read-only file is refused and left alone; installs in
    /// one second keep a backup each.
    @Test func installEditsThroughASymlinkRefusesReadOnlyAndKeepsEveryBackup() async throws {
        try await FwdFixture.with { f in
            try f.write(config: "[tunnels.x]\nhost = \"lab\"\nlocal = \"1:127.0.0.1:1\"\n")
            let dotfiles = f.dir + "/dotfiles"
            try FileSystem.makePrivateDirectory(dotfiles)
            // CRLF, a tab, a UTF-8 name and no final newline: uninstall must give back every byte.
            let original: [UInt8] = Array("# managed by my dotfiles\r\nHost lab\r\n\tUser m\u{e9}\r\n  # end".utf8)
            try FileSystem.writeAtomically(original, to: dotfiles + "/ssh_config", mode: 0o644)
            try? FileManager.default.removeItem(atPath: f.userSSHConfig)
            #expect(symlink(dotfiles + "/ssh_config", f.userSSHConfig) == 0)
            func isLink() -> Bool {
                var st = stat()
                return lstat(f.userSSHConfig, &st) == 0 && st.st_mode & S_IFMT == S_IFLNK
            }

            let install = try f.fwd("config", "install")
            #expect(install.ok, "\(install.stderr)")
            #expect(isLink(), "the symlink was replaced")
            let line = "Include \(f.stateDir)/ssh_config.fwd\n"
            #expect(FileSystem.readBytes(dotfiles + "/ssh_config") == Array(line.utf8) + original)
            #expect(FileSystem.mode(of: dotfiles + "/ssh_config") == 0o644)
            // The backup is beside the path ssh reads and holds the target's old bytes.
            let backups = { (try? FileManager.default.contentsOfDirectory(atPath: f.dir + "/home/.ssh"))?.filter { $0.hasPrefix("config.fwd-backup-") }.sorted() ?? [] }
            #expect(backups().count == 1)
            #expect(backups().first.flatMap { FileSystem.readBytes(f.dir + "/home/.ssh/" + $0) } == original)

            let uninstall = try f.fwd("config", "uninstall")
            #expect(uninstall.ok, "\(uninstall.stderr)")
            #expect(isLink())
            #expect(FileSystem.readBytes(dotfiles + "/ssh_config") == original, "uninstall did not restore the target byte for byte")

            // Two more installs within a second or so: every backup keeps its own name.
            for _ in 0..<2 {
                #expect(try f.fwd("config", "install").ok)
                #expect(try f.fwd("config", "uninstall").ok)
            }
            #expect(backups().count == 3, "\(backups())")
            for name in backups() { #expect(FileSystem.readBytes(f.dir + "/home/.ssh/" + name) == original) }

            // Read-only: refused with a message, nothing changes, no backup.
            #expect(chmod(dotfiles + "/ssh_config", 0o444) == 0)
            let refused = try f.fwd("config", "install")
            #expect(!refused.ok)
            #expect(refused.stderr.contains("read-only") && refused.stderr.contains("changed nothing"), "\(refused.stderr)")
            #expect(FileSystem.readBytes(dotfiles + "/ssh_config") == original)
            #expect(backups().count == 3)
            #expect(isLink())
        }
    }

    /// A tunnel and a `[hosts]` entry named like Hosts in the user's ssh_config: `ssh -G NAME` still points at
    /// the user's host, while fwd's own master for that name reaches fwd's server. `fwd add` and `fwd doctor`
    /// say so, and also name a tunnel that is a host in known_hosts (hashed) or that resolves.
    @Test func namesTheUsersConfigDefinesStayTheUsers() async throws {
        try await FwdFixture.with { f in
            // The user has connected to "gitbox" before: a hashed entry, beside the lab's own.
            let knownHosts = f.sshd.knownHosts
            let entry = "gitbox ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBr2r1rPPtXwQLkcLBt3YY5SzRkaCCbQ5qXbmR/GSrAF\n"
            try FileSystem.writeAtomically((FileSystem.read(knownHosts) ?? "") + entry, to: knownHosts)
            #expect(try f.run(["ssh-keygen", "-H", "-f", knownHosts]).ok)
            #expect(FileSystem.read(knownHosts)?.contains("gitbox") == false, "the entry should be hashed")
            try f.write(userSSHConfig: """
            Host db
                HostName 192.0.2.7
                User theirs
            Host mirror*
                HostName 192.0.2.8
            Match host 127.0.0.1
                UserKnownHostsFile \(f.sshd.knownHosts)
                IdentityFile \(f.sshd.clientKey)
            Host *
                UserKnownHostsFile \(knownHosts)

            """)
            let port = try LocalPort.free()
            try f.write(config: """
            [hosts.db]
            hostname = "127.0.0.1"
            port = \(f.sshd.port)
            user = "\(f.sshd.user)"

            [tunnels.mirror1]
            host = "db"
            local = "\(port):127.0.0.1:\(f.web.port)"
            probe = "http"

            """)
            #expect(try f.fwd("config", "install").ok)

            // Plain ssh: the user's hosts, not fwd's.
            let db = try Self.resolved(f, config: f.userSSHConfig, host: "db")
            #expect(db.value("hostname") == "192.0.2.7" && db.value("user") == "theirs", "\(db.lines)")
            #expect(db.value("controlpath") == nil || db.value("controlpath") == "none")
            let mirror = try Self.resolved(f, config: f.userSSHConfig, host: "mirror1")
            #expect(mirror.value("hostname") == "192.0.2.8", "\(mirror.lines)")
            // fwd's own ssh: fwd's [hosts.db], and the tunnel really runs through it.
            let own = try Self.resolved(f, config: f.stateDir + "/ssh_config", host: "db")
            #expect(own.value("hostname") == "127.0.0.1" && own.value("port") == "\(f.sshd.port)", "\(own.lines)")
            let up = try f.fwd("up", "mirror1")
            #expect(up.ok, "\(up.stdout)\(up.stderr)")
            #expect(f.fetchRetrying(port: port)?.body == f.pageBody)

            // Warnings: at add (the tunnel is added all the same) and in doctor.
            let addDB = try f.fwd("add", "mirror2", "--host", "db", "-L", "\(try LocalPort.free()):127.0.0.1:1")
            #expect(addDB.ok, "\(addDB.stderr)")
            #expect(addDB.stderr.contains("warning: mirror2 is also a Host in \(f.userSSHConfig)"), "\(addDB.stderr)")
            let addKnown = try f.fwd("add", "gitbox", "--host", "db", "-L", "\(try LocalPort.free()):127.0.0.1:1")
            #expect(addKnown.stderr.contains("warning: gitbox is a host in \(knownHosts)"), "\(addKnown.stderr)")
            let addResolves = try f.fwd("add", "localhost", "--host", "db", "-L", "\(try LocalPort.free()):127.0.0.1:1")
            #expect(addResolves.stderr.contains("warning: localhost resolves"), "\(addResolves.stderr)")
            let addPlain = try f.fwd("add", "fwd-wiki-tunnel", "--host", "db", "-L", "\(try LocalPort.free()):127.0.0.1:1")
            #expect(addPlain.ok && !addPlain.stderr.contains("warning"), "\(addPlain.stderr)")

            let doctor = try f.fwd("doctor", "--json")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(doctor.stdout.utf8)) as? [String: Any])
            let names = (report["findings"] as? [[String: Any]] ?? []).filter { $0["check"] as? String == "names" }
            let messages = names.compactMap { $0["message"] as? String }
            for name in ["db", "mirror1", "mirror2", "gitbox", "localhost"] {
                #expect(messages.contains { $0.hasPrefix("\(name) ") }, "doctor does not name \(name): \(messages)")
            }
            #expect(names.allSatisfy { $0["status"] as? String == "warning" })
            #expect(!messages.contains { $0.hasPrefix("fwd-wiki-tunnel ") })
            #expect(try f.fwd("down", "--all").ok)
        }
    }

    /// A newline in the config's path cannot add a directive to the fragment; a space in the state directory
    /// (which ssh pastes unquoted into the command it builds from ProxyJump) still lets a jump tunnel come up.
    @Test func oddPathsNeitherInjectNorBreakProxyJump() async throws {
        try await FwdFixture.with { f in
            let marker = f.dir + "/pwned"
            let configDir = f.dir + "/conf\nProxyCommand touch \(marker)\n"
            try FileSystem.makePrivateDirectory(configDir)
            let configPath = configDir + "/fwd.toml"
            let state = f.dir + "/st ate"
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab") + """
            Match host 127.0.0.1
                UserKnownHostsFile \(f.sshd.knownHosts)
                IdentityFile \(f.sshd.clientKey)

            """)
            let port = try LocalPort.free()
            try FileSystem.writeAtomically("""
            [hosts.inner]
            hostname = "127.0.0.1"
            port = \(f.sshd.port)
            user = "\(f.sshd.user)"
            jump = "lab"

            [tunnels.wiki]
            host = "inner"
            local = "\(port):127.0.0.1:\(f.web.port)"
            probe = "http"

            """, to: configPath)
            let env: [String: String?] = ["FWD_CONFIG": configPath, "FWD_STATE_DIR": state]
            defer { _ = try? f.fwd(arguments: ["daemon", "--stop"], environment: env) }

            let printed = try f.fwd(arguments: ["config", "print"], environment: env)
            #expect(printed.ok, "\(printed.stderr)")
            #expect(!printed.stdout.split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces).lowercased().hasPrefix("proxycommand") }, "\(printed.stdout)")
            #expect(printed.stdout.contains("# Source: \(f.dir)/conf\\nProxyCommand touch \(marker)\\n/fwd.toml\n"), "\(printed.stdout)")
            let r = try Self.resolved(f, config: state + "/ssh_config.fwd", host: "wiki")
            #expect(r.value("proxycommand") == nil || r.value("proxycommand") == "none")
            #expect(r.value("proxyjump") == "lab")

            let up = try f.fwd(arguments: ["up", "wiki"], environment: env)
            #expect(up.ok, "\(up.stdout)\(up.stderr)\n\(FileSystem.read(state + "/logs/inner.log") ?? "")")
            #expect(f.fetchRetrying(port: port)?.body == f.pageBody)
            #expect(!FileSystem.exists(marker))
            #expect(try f.fwd(arguments: ["down", "wiki"], environment: env).ok)
        }
    }
}
