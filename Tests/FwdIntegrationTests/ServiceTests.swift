import Foundation
@testable import FwdCore
import FwdLab
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `fwd service` and the daemon it starts at login.
@Suite(.serialized) struct ServiceTests {
    /// Every file (not directory) under `root`, relative to it.
    func files(under root: String) -> [String] {
        var result: [String] = []
        let entries = FileManager.default.enumerator(atPath: root)
        while let entry = entries?.nextObject() as? String {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: root + "/" + entry, isDirectory: &isDirectory), !isDirectory.boolValue {
                result.append(entry)
            }
        }
        return result.sorted()
    }

    @Test func installWritesExactlyTheSystemdUnitWithMode0644() async throws {
        try await FwdFixture.with { f in
            let home = f.dir + "/login", xdg = f.dir + "/xdg"
            try FileSystem.makePrivateDirectory(home)
            let env: [String: String?] = ["HOME": home, "XDG_CONFIG_HOME": xdg]
            let install = try f.fwd(arguments: ["service", "install", "--user", "--manager", "systemd"], environment: env)
            #expect(install.ok, "\(install.stderr)")
            #expect(install.stdout.contains("systemctl --user daemon-reload && systemctl --user enable --now fwd"))
            #expect(files(under: xdg) == ["systemd/user/fwd.service"])
            #expect(files(under: home).isEmpty)
            let path = xdg + "/systemd/user/fwd.service"
            #expect(FileSystem.mode(of: path) == 0o644)
            let unit = try #require(FileSystem.read(path))
            #expect(unit == (try f.fwd(arguments: ["service", "print", "--manager", "systemd"], environment: env)).stdout)
            let binary = URL(fileURLWithPath: FwdFixture.binary).resolvingSymlinksInPath().path
            for line in ["ExecStart=\(binary) daemon", "Restart=on-failure", "After=network-online.target", "Wants=network-online.target",
                         "Environment=\"FWD_CONFIG=\(f.configPath)\"", "Environment=\"FWD_STATE_DIR=\(f.stateDir)\"",
                         "Environment=\"FWD_SSH_CONFIG=\(f.userSSHConfig)\"", "WantedBy=default.target"] {
                #expect(unit.split(separator: "\n").contains(Substring(line)), "the unit lacks \(line):\n\(unit)")
            }

            let status = try f.fwd(arguments: ["service", "status", "--json", "--manager", "systemd"], environment: env)
            let report = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
            #expect(report["installed"] as? Bool == true)
            #expect(report["current"] as? Bool == true)
            #expect(report["path"] as? String == path)

            let uninstall = try f.fwd(arguments: ["service", "uninstall", "--manager", "systemd"], environment: env)
            #expect(uninstall.ok)
            #expect(files(under: xdg).isEmpty)
        }
    }

    @Test func withoutXDGConfigHomeTheUnitGoesUnderHome() async throws {
        try await FwdFixture.with { f in
            let home = f.dir + "/login"
            try FileSystem.makePrivateDirectory(home)
            let install = try f.fwd(arguments: ["service", "install", "--manager", "systemd"], environment: ["HOME": home, "XDG_CONFIG_HOME": nil])
            #expect(install.ok, "\(install.stderr)")
            #expect(files(under: home) == [".config/systemd/user/fwd.service"])
            #expect(FileSystem.mode(of: home + "/.config/systemd/user/fwd.service") == 0o644)
        }
    }

    @Test func installWritesTheLaunchdAgentAsAValidPlist() async throws {
        try await FwdFixture.with { f in
            let home = f.dir + "/login"
            try FileSystem.makePrivateDirectory(home)
            let install = try f.fwd(arguments: ["service", "install", "--manager", "launchd"], environment: ["HOME": home])
            #expect(install.ok, "\(install.stderr)")
            #expect(files(under: home) == ["Library/LaunchAgents/dev.fwd.daemon.plist"])
            let path = home + "/Library/LaunchAgents/dev.fwd.daemon.plist"
            #expect(FileSystem.mode(of: path) == 0o644)
            let data = try #require(FileManager.default.contents(atPath: path))
            let plist = try #require(try PropertyListSerialization.propertyList(from: data, format: nil) as? [String: Any])
            let binary = URL(fileURLWithPath: FwdFixture.binary).resolvingSymlinksInPath().path
            #expect(plist["Label"] as? String == "dev.fwd.daemon")
            #expect(plist["ProgramArguments"] as? [String] == [binary, "daemon"])
            #expect(plist["RunAtLoad"] as? Bool == true)
            #expect((plist["KeepAlive"] as? [String: Any])?["SuccessfulExit"] as? Bool == false)
            #expect((plist["EnvironmentVariables"] as? [String: String])?["FWD_STATE_DIR"] == f.stateDir)
            // launchd opens the log itself; its directory must exist.
            #expect(FileSystem.exists(f.stateDir + "/logs"))
        }
    }

    @Test func systemdAcceptsTheUnit() async throws {
        let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let analyze else {
            print("skipped: systemd-analyze is not installed, so the unit is checked by the golden and structural tests only")
            return
        }
        try await FwdFixture.with { f in
            let xdg = f.dir + "/xdg", runtime = f.dir + "/runtime"
            try FileSystem.makePrivateDirectory(runtime)
            #expect(try f.fwd(arguments: ["service", "install"], environment: ["XDG_CONFIG_HOME": xdg]).ok)
            // --user needs a runtime directory even to verify; the unit is a user unit.
            let verify = try f.run([analyze, "--user", "verify", xdg + "/systemd/user/fwd.service"], environment: ["XDG_RUNTIME_DIR": runtime])
            #expect(verify.ok, "\(verify.stdout)\(verify.stderr)")
            #expect(verify.stderr.isEmpty && verify.stdout.isEmpty, "\(verify.stdout)\(verify.stderr)")
        }
    }

    @Test func theDaemonBringsUpAutostartTunnelsOnly() async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            let port = try LocalPort.free(), other = try LocalPort.free()
            try f.write(config: """
            [tunnels.wiki]
            host = "lab"
            local = "\(port):127.0.0.1:\(f.web.port)"
            autostart = true

            [tunnels.manual]
            host = "lab"
            local = "\(other):127.0.0.1:\(f.web.port)"

            """)
            let daemon = try ChildProcess([FwdFixture.binary, "daemon"], outputPath: f.dir + "/daemon.out", environment: f.environment)
            defer { daemon.terminate(); daemon.waitExit(timeout: 10) }
            #expect(f.waitForState("wiki", .up, timeout: 20) != nil, "\(FileSystem.read(f.dir + "/daemon.out") ?? "")")
            #expect(f.fetchRetrying(port: port)?.body == f.pageBody)
            #expect(f.state("manual") == .down, "a tunnel without autostart stays as it was")
            #expect(try f.reportedStatus("manual")?["desired"] as? String == "down")
            #expect(!LocalPort.isAccepting(port: other))
            // Autostart is a start-up wish only: once taken down, a later request does not bring it back.
            #expect(try f.fwd("down", "wiki").ok)
            #expect(try f.fwd("up", "manual").ok)
            #expect(f.state("manual") == .up)
            #expect(f.state("wiki") == .down)
            #expect(try Store(path: f.paths.database).tunnel("wiki")?.desired == .down)
        }
    }
}
