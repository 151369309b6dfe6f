import Foundation
import FwdCore
import FwdLab
import Testing

/// The generated ssh_config, used by plain ssh and by fwd's own ssh runs, against a real sshd.
@Suite(.serialized) struct ConfigIntegrationTests {
    /// The host exists only in the user's own ssh_config: fwd must carry its settings into the tunnel's Host block.
    @Test func plainSSHBringsUpATunnelFromTheGeneratedConfig() async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: "# the user's own config\n" + f.sshd.clientConfigBlock(alias: "lab"))
            let localPort = try LocalPort.free()
            try f.write(config: """
            [tunnels.intranet-wiki]
            host = "lab"
            local = "\(localPort):127.0.0.1:\(f.web.port)"
            probe = "http"
            """)

            let install = try f.fwd("config", "install")
            #expect(install.ok, "\(install.stderr)")
            let userConfig = try #require(FileSystem.read(f.userSSHConfig))
            #expect(userConfig.hasPrefix("Include \(f.stateDir)/ssh_config.fwd\n# the user's own config\n"))
            #expect(FileSystem.mode(of: f.stateDir + "/ssh_config.fwd") == 0o600)
            #expect(FileSystem.mode(of: f.stateDir) == 0o700)
            #expect(try f.fwd("config", "install").ok)
            #expect(FileSystem.read(f.userSSHConfig) == userConfig, "a second install changed the file")

            // Plain ssh, reading only the user's ssh_config (which now includes fwd's fragment).
            let ssh = try ChildProcess(["ssh", "-F", f.userSSHConfig, "-N", "-o", "ExitOnForwardFailure=yes", "intranet-wiki"],
                                       outputPath: f.dir + "/ssh.log")
            defer { ssh.terminate(); ssh.waitExit(timeout: 5) }
            let page = f.fetchRetrying(port: localPort)
            #expect(page?.status == 200, "ssh log: \(FileSystem.read(f.dir + "/ssh.log") ?? "")")
            #expect(page?.body == f.pageBody)
            #expect(f.web.requestCount >= 1)

            #expect(try f.fwd("config", "uninstall").ok)
            #expect(FileSystem.read(f.userSSHConfig) == "# the user's own config\n" + f.sshd.clientConfigBlock(alias: "lab"))
        }
    }

    /// A `[hosts]` entry plus a `Match` block in the user's config: fwd's ssh runs see both.
    @Test func showResolvesThroughTheUsersConfigToo() async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: """
            Match host 127.0.0.1
                UserKnownHostsFile \(f.sshd.knownHosts)
                IdentityFile \(f.sshd.clientKey)

            """)
            try f.write(config: """
            [hosts.office]
            hostname = "127.0.0.1"
            port = \(f.sshd.port)
            user = "\(f.sshd.user)"

            [tunnels.wiki]
            host = "office"
            local = "18080:127.0.0.1:\(f.web.port)"
            """)
            let shown = try f.fwd("show", "wiki", "--json")
            #expect(shown.ok, "\(shown.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(shown.stdout.utf8)) as? [String: Any])
            #expect(json["hostname"] as? String == "127.0.0.1")
            #expect(json["port"] as? String == "\(f.sshd.port)")
            let controlPath = try #require(json["control_path"] as? String)
            #expect(controlPath.hasPrefix(f.paths.controlDirectory + "/"))
            #expect(controlPath.utf8.count + 17 <= 90)
            let commands = try #require(json["commands"] as? [String: [[String]]])
            #expect(commands["add"]?.first?.suffix(4) == ["forward", "-L", "127.0.0.1:18080:127.0.0.1:\(f.web.port)", "fwd-mux"])

            // The fragment's tunnel block carries the identity and known_hosts from the user's Match block.
            let fragment = try #require(FileSystem.read(f.stateDir + "/ssh_config.fwd"))
            #expect(fragment.contains("IdentityFile \(f.sshd.clientKey)"))
            #expect(fragment.contains("UserKnownHostsFile \(f.sshd.knownHosts)"))

            // And fwd's root config really reaches the server with the user's settings.
            let probe = try ChildProcess(["ssh", "-F", f.stateDir + "/ssh_config", "office", "true"], outputPath: f.dir + "/probe.log")
            #expect(probe.waitExit(timeout: 20) == .exited(0), "\(FileSystem.read(f.dir + "/probe.log") ?? "")")
        }
    }
}
