import Foundation
import Testing
@testable import FwdCore

@Suite struct SSHConfigFilesTests {
    let paths = FwdPaths(config: "/c/fwd.toml", stateDirectory: "/s", userSSHConfig: "/h/.ssh/config", controlDirectory: "/tmp/fwd-0-1")

    func config() throws -> FwdConfig {
        try ConfigLoader.parse("""
        [hosts.office]
        hostname = "a.example.com"
        user = "alice"
        jump = "bastion"
        identity = "~/.ssh/id ed25519"
        forward_agent = true
        options = { Compression = "yes" }

        [tunnels.wiki]
        host = "office"
        local = "8080:wiki.lan:80"
        """, path: "/c/fwd.toml")
    }

    @Test func hostBlock() throws {
        #expect(SSHConfigFiles.hostBlocks(try config(), paths: paths) == """
        Host office
            HostName a.example.com
            User alice
            ProxyJump bastion
            IdentityFile "~/.ssh/id ed25519"
            ForwardAgent yes
            Compression yes
            ControlMaster auto
            ControlPath /tmp/fwd-0-1/office


        """)
    }

    @Test func tunnelBlockCarriesTheResolvedSettings() throws {
        let resolved = ResolvedHost(parsing: """
        user alice
        hostname a.example.com
        port 22
        identityfile ~/.ssh/id_rsa
        identityfile ~/.ssh/my key
        proxyjump bastion
        forwardagent yes
        """)
        let baseline = ResolvedHost(parsing: "identityfile ~/.ssh/id_rsa\nforwardagent no\nport 22\n")
        let text = SSHConfigFiles.tunnelBlocks(try config(), paths: paths, resolved: ["office": resolved], baseline: baseline)
        #expect(text == """
        Host wiki
            HostName a.example.com
            User alice
            Port 22
            IdentityFile ~/.ssh/id_rsa
            IdentityFile "~/.ssh/my key"
            ProxyJump bastion
            ForwardAgent yes
            ControlMaster auto
            ControlPath /tmp/fwd-0-1/office
            ExitOnForwardFailure yes
            LocalForward 127.0.0.1:8080 wiki.lan:80


        """)
    }

    @Test func rootConfigIncludesFragmentThenUserThenSystem() {
        let lines = SSHConfigFiles.rootConfig(paths: paths).split(separator: "\n").filter { $0.hasPrefix("Include") }
        #expect(lines == ["Include /s/ssh_config.fwd", "Include /h/.ssh/config", "Include /etc/ssh/ssh_config"])
    }

    @Test func installIsIdempotentKeepsTheRestAndBacksUp() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-install-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = FwdPaths(config: dir + "/fwd.toml", stateDirectory: dir + "/state", userSSHConfig: dir + "/home/.ssh/config")
        try FileSystem.makePrivateDirectory(dir + "/home/.ssh")
        let original = "# mine\nHost x\n    User me\n"
        try FileSystem.writeAtomically(original, to: p.userSSHConfig, mode: 0o644)

        let first = try SSHConfigFiles.install(paths: p, now: Date(timeIntervalSince1970: 0))
        #expect(first == .installed(backup: p.userSSHConfig + ".fwd-backup-19700101T000000Z"))
        #expect(FileSystem.read(p.userSSHConfig) == "Include \(p.fragment)\n" + original)
        #expect(FileSystem.read(p.userSSHConfig + ".fwd-backup-19700101T000000Z") == original)
        #expect(FileSystem.mode(of: p.userSSHConfig) == 0o644)

        #expect(try SSHConfigFiles.install(paths: p) == .alreadyInstalled)
        #expect(FileSystem.read(p.userSSHConfig) == "Include \(p.fragment)\n" + original)

        #expect(try SSHConfigFiles.uninstall(paths: p))
        #expect(FileSystem.read(p.userSSHConfig) == original)
        #expect(try SSHConfigFiles.uninstall(paths: p) == false)
    }

    /// Installs in the same second never share a backup, and uninstall gives back every byte (CRLF, no final newline).
    @Test func backupsNeverCollideAndUninstallIsByteExact() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-install-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = FwdPaths(config: dir + "/fwd.toml", stateDirectory: dir + "/state", userSSHConfig: dir + "/home/.ssh/config")
        try FileSystem.makePrivateDirectory(dir + "/home/.ssh")
        let original = Array("Host x\r\n\tUser me\r\n# no newline".utf8)
        try FileSystem.writeAtomically(original, to: p.userSSHConfig)
        let now = Date(timeIntervalSince1970: 0)
        var backups: [String] = []
        for _ in 0..<3 {
            guard case .installed(let backup?) = try SSHConfigFiles.install(paths: p, now: now) else { Issue.record("not installed"); return }
            backups.append(backup)
            #expect(try SSHConfigFiles.uninstall(paths: p))
            #expect(FileSystem.readBytes(p.userSSHConfig) == original)
        }
        let stem = p.userSSHConfig + ".fwd-backup-19700101T000000Z"
        #expect(backups == [stem, stem + "-2", stem + "-3"])
        for b in backups { #expect(FileSystem.readBytes(b) == original) }
    }

    @Test func readOnlyConfigIsRefusedAndUntouched() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-install-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = FwdPaths(config: dir + "/fwd.toml", stateDirectory: dir + "/state", userSSHConfig: dir + "/home/.ssh/config")
        try FileSystem.makePrivateDirectory(dir + "/home/.ssh")
        try FileSystem.writeAtomically("Host x\n", to: p.userSSHConfig, mode: 0o444)
        #expect(throws: SSHConfigFiles.InstallRefused.self) { try SSHConfigFiles.install(paths: p) }
        #expect(FileSystem.read(p.userSSHConfig) == "Host x\n")
        #expect((try FileManager.default.contentsOfDirectory(atPath: dir + "/home/.ssh")) == ["config"])
    }

    /// Paths with a space are quoted; those ssh_config cannot hold as written are refused; the config path in
    /// the comment cannot start a line.
    @Test func pathsAreQuotedOrRefused() throws {
        let spaced = FwdPaths(config: "/c/a\nProxyCommand x/fwd.toml", stateDirectory: "/s p", userSSHConfig: "/h/my config", controlDirectory: "/tmp/fwd 0")
        #expect(SSHConfigFiles.pathProblem(spaced) == nil)
        #expect(SSHConfigFiles.includeLine(paths: spaced) == "Include \"/s p/ssh_config.fwd\"")
        #expect(SSHConfigFiles.rootConfig(paths: spaced).contains("Include \"/h/my config\"\n"))
        var config = try config()
        config.path = spaced.config
        let fragment = SSHConfigFiles.fragment(config, paths: spaced, resolved: [:])
        #expect(fragment.contains("    ControlPath \"/tmp/fwd 0/office\"\n"))
        #expect(fragment.contains("# Source: /c/a\\nProxyCommand x/fwd.toml\n"))
        #expect(!fragment.split(separator: "\n").contains { $0.hasPrefix("ProxyCommand") })
        for bad in ["/s\"q", "/s\\b", "/s%h", "/s${HOME}", "/s*", "/s\nHost *"] {
            #expect(SSHConfigFiles.pathProblem(FwdPaths(config: "/c", stateDirectory: bad, userSSHConfig: "/h")) != nil, "\(bad)")
        }
    }

    /// A name the user's ssh_config defines gets no block in the fragment; the root config has it, first.
    @Test func blocksTheUserDefinesGoToTheRootConfigOnly() throws {
        let c = try config()
        let fragment = SSHConfigFiles.fragment(c, paths: paths, resolved: [:], userHosts: ["wiki"])
        #expect(fragment.contains("Host office\n") && !fragment.contains("Host wiki\n"))
        let own = SSHConfigFiles.tunnelBlocks(c, paths: paths, resolved: [:], only: { $0 == "wiki" })
        let root = SSHConfigFiles.rootConfig(paths: paths, ownBlocks: own)
        #expect(root.contains("Host wiki\n"))
        let lines = root.split(separator: "\n")
        #expect(lines.firstIndex(of: "Host wiki")! < lines.firstIndex(of: "Match all")!)
        #expect(lines.firstIndex(of: "Match all")! < lines.firstIndex(of: "Include /s/ssh_config.fwd")!)

        #expect(SSHConfigAliases.defines("db", in: ["Host db\n"]))
        #expect(SSHConfigAliases.defines("DB", in: ["host mirror* db\n"]))
        #expect(SSHConfigAliases.defines("mirror1", in: ["Host mirror?\n"]))
        #expect(!SSHConfigAliases.defines("db", in: ["Host *\n    User x\n"]))
        #expect(!SSHConfigAliases.defines("db", in: ["Host * !db\n", "Host d*b !db\n"]))
        #expect(!SSHConfigAliases.defines("db", in: ["# Host db\nHost dbx\n"]))
    }

    @Test func installCreatesAMissingConfigPrivately() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-install-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = FwdPaths(config: dir + "/fwd.toml", stateDirectory: dir + "/state", userSSHConfig: dir + "/home/.ssh/config")
        #expect(try SSHConfigFiles.install(paths: p) == .installed(backup: nil))
        #expect(FileSystem.mode(of: p.userSSHConfig) == 0o600)
        #expect(FileSystem.mode(of: dir + "/home/.ssh") == 0o700)
    }
}

@Suite struct AtomicWriteTests {
    /// A writer killed between creating its temporary and renaming it (SIGKILL during `fwd add`) leaves
    /// `.NAME.PID.N.tmp`; the next write of that file removes it. A live process's temporary may be in flight.
    @Test func nextWriteRemovesTemporariesOfDeadWriters() throws {
        let dir = NSTemporaryDirectory() + "fwd-atomic-\(UUID().uuidString)"
        try FileSystem.makePrivateDirectory(dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var dead: Int32 = 4_000_000
        while kill(dead, 0) == 0 || errno != ESRCH { dead -= 1 }
        let abandoned = "\(dir)/.fwd.toml.\(dead).12345.tmp"
        let inFlight = "\(dir)/.fwd.toml.\(getpid()).678.tmp"
        let unrelated = "\(dir)/.other.toml.\(dead).1.tmp"
        for file in [abandoned, inFlight, unrelated] { try FileSystem.writeAtomically("x", to: file) }
        try FileSystem.writeAtomically("[tunnels]\n", to: dir + "/fwd.toml")
        #expect(!FileSystem.exists(abandoned))
        #expect(FileSystem.exists(inFlight))
        #expect(FileSystem.exists(unrelated))
        #expect(FileSystem.read(dir + "/fwd.toml") == "[tunnels]\n")
    }
}

@Suite struct ConfigEditorTests {
    let original = """
    # My tunnels — keep this comment
    [hosts.office]
    hostname = "a.example.com"   # trailing comment

    # the wiki
    [tunnels.wiki]
    host = "office"
    local = "8080:wiki.lan:80"

    # the proxy
    [tunnels.socks]
    host = "office"
    dynamic = "1080"
    """

    @Test func appendKeepsEverythingElse() throws {
        var t = Tunnel(name: "db", host: "office", forwards: [try ForwardSpec.parse("5432:db.lan:5432", kind: .local)], probe: .tcp)
        t.isPublic = false
        let result = try ConfigEditor.appending(ConfigEditor.table(for: t), named: "db", to: original, path: "f")
        #expect(result.text.hasPrefix(original + "\n\n[tunnels.db]\n"))
        #expect(result.text.hasSuffix("host = \"office\"\nlocal = \"5432:db.lan:5432\"\nprobe = \"tcp\"\n"))
        #expect(result.config.tunnels.map(\.name) == ["wiki", "socks", "db"])
    }

    @Test func appendRefusesDuplicates() throws {
        let t = Tunnel(name: "wiki", host: "office", forwards: [try ForwardSpec.parse("1:a:1", kind: .local)])
        #expect(throws: ConfigError.self) { try ConfigEditor.appending(ConfigEditor.table(for: t), named: "wiki", to: original, path: "f") }
    }

    @Test func appendRefusesABrokenExistingFile() throws {
        let t = Tunnel(name: "x", host: "office", forwards: [try ForwardSpec.parse("1:a:1", kind: .local)])
        #expect(throws: ConfigError.self) { try ConfigEditor.appending(ConfigEditor.table(for: t), named: "x", to: "[tunnels.a\n", path: "f") }
    }

    @Test func removeTakesOnlyThatTableAndItsComment() throws {
        let result = try ConfigEditor.removing("wiki", from: original, path: "f")
        #expect(result == """
        # My tunnels — keep this comment
        [hosts.office]
        hostname = "a.example.com"   # trailing comment

        # the proxy
        [tunnels.socks]
        host = "office"
        dynamic = "1080"
        """)
        let last = try ConfigEditor.removing("socks", from: original, path: "f")
        #expect(last.hasSuffix("local = \"8080:wiki.lan:80\"\n"))
    }

    @Test func removeRefusesWhileAGroupNamesIt() {
        #expect(throws: ConfigError.self) {
            try ConfigEditor.removing("wiki", from: original + "\n\n[groups]\nwork = [\"wiki\"]\n", path: "f")
        }
        #expect(throws: ConfigError.self) { try ConfigEditor.removing("nope", from: original, path: "f") }
    }
}

@Suite struct PresetTests {
    static var templates: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("templates").path
    }

    @Test func everySeedScenarioHasAPreset() {
        let names = Presets.all(in: Self.templates).map(\.name)
        for wanted in ["postgres", "mysql", "intranet-web", "rdp", "vnc", "bastion-ssh", "imap", "pop3", "ftp", "telnet",
                       "socks", "expose-web", "home-ssh", "laptop-db", "publish-web", "lan-socks"] {
            #expect(names.contains(wanted), "missing preset \(wanted)")
        }
    }

    @Test func everyPresetRendersToAValidTunnelWithAFittingProbe() throws {
        for preset in Presets.all(in: Self.templates) {
            #expect(!preset.summary.isEmpty, "\(preset.name) has no summary")
            let text = try preset.render(.init(name: "t", host: "office", target: "db.lan", passive: preset.usesPassive ? "60000-60009" : nil))
            let config = try ConfigLoader.parse(text, path: preset.name)
            let tunnel = try #require(config.tunnels.first)
            #expect(tunnel.host == "office")
            let probe = try #require(tunnel.probe, "\(preset.name) sets no probe")
            #expect(tunnel.forwards.allSatisfy { probe.fits($0) }, "\(preset.name): probe \(probe) does not fit")
        }
    }

    /// The two presets that share a tunnel beyond loopback are public, on every address, with their probe.
    @Test func publishWebAndLanSocksArePublicOnEveryAddress() throws {
        let web = try ConfigLoader.parse(try Presets.named("publish-web", in: Self.templates).render(.init(name: "site", host: "office")), path: "p").tunnels[0]
        #expect(web.isPublic && web.probe == .http)
        #expect(web.forwards == [try ForwardSpec.parse("0.0.0.0:8080:localhost:3000", kind: .remote)])
        let socks = try ConfigLoader.parse(try Presets.named("lan-socks", in: Self.templates).render(.init(name: "lan", host: "office", port: 11080)), path: "p").tunnels[0]
        #expect(socks.isPublic && socks.probe == .socks)
        #expect(socks.forwards == [try ForwardSpec.parse("0.0.0.0:11080", kind: .dynamic)])
    }

    @Test func postgresFillsInTargetAndPorts() throws {
        let preset = try Presets.named("postgres", in: Self.templates)
        let text = try preset.render(.init(name: "db", host: "office", target: "db.lan"))
        let tunnel = try ConfigLoader.parse(text, path: "p").tunnels[0]
        #expect(tunnel.forwards == [try ForwardSpec.parse("5432:db.lan:5432", kind: .local)])
        let custom = try preset.render(.init(name: "db", host: "office", target: "2001:db8::5", port: 15432))
        #expect(try ConfigLoader.parse(custom, path: "p").tunnels[0].forwards == [try ForwardSpec.parse("15432:[2001:db8::5]:5432", kind: .local)])
    }

    @Test func ftpForwardsControlAndThePassiveRangePortForPort() throws {
        let preset = try Presets.named("ftp", in: Self.templates)
        #expect(preset.summary.contains("fixed passive range") && preset.summary.contains("curl"))
        let text = try preset.render(.init(name: "files", host: "office", target: "ftp.lan", passive: "60000-60009"))
        let tunnel = try ConfigLoader.parse(text, path: "p").tunnels[0]
        #expect(tunnel.written.map(\.text) == ["2121:ftp.lan:21", "60000-60009:ftp.lan:60000-60009"])
        #expect(tunnel.forwards.count == 11)
        #expect(tunnel.forwards.dropFirst().map(\.sshArgument) == (60000...60009).map { "127.0.0.1:\($0):ftp.lan:\($0)" })
        #expect(tunnel.probe(for: tunnel.forwards[0]) == .ftp, "the control port gets the FTP greeting probe")
        #expect(tunnel.forwards.dropFirst().allSatisfy { tunnel.probe(for: $0) == ProbeKind.none })
        for bad in [nil, "x-y", "60009-60000", "1-101", "60000-60009\"\n[tunnels.x]"] as [String?] {
            #expect(throws: PresetError.self, "\(bad ?? "nil")") { try preset.render(.init(name: "files", host: "office", passive: bad)) }
        }
        let postgres = try Presets.named("postgres", in: Self.templates)
        #expect(throws: PresetError.badValue("--passive goes with a preset that forwards a passive port range (ftp); the postgres preset has none")) {
            try postgres.render(.init(name: "db", host: "office", passive: "60000-60009"))
        }
    }

    @Test func presetValuesCannotInject() throws {
        let preset = try Presets.named("postgres", in: Self.templates)
        #expect(throws: PresetError.self) { try preset.render(.init(name: "db", host: "office\"\n[tunnels.x]", target: "a")) }
        #expect(throws: PresetError.self) { try preset.render(.init(name: "db", host: "office", target: "a\"\nprobe=\"none")) }
        #expect(throws: PresetError.self) { try preset.render(.init(name: "../db", host: "office")) }
        #expect(throws: PresetError.self) { try Presets.named("postgress", in: Self.templates) }
    }
}
