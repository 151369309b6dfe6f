import Foundation
@testable import FwdCore
import FwdLab
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 21, with the real binary, real ssh and a real sshd: the config file is the truth. `fwd rm` leaves no
/// orphan, `fwd status` shows what the file has, plain ssh knows a tunnel the moment it is added, and the
/// supervisor applies every save by itself (or at `fwd reload`) without touching what did not change.
@Suite(.serialized) struct ConfigTruthTests {
    static func tunnel(_ name: String, port: Int, web: Int) -> String {
        "[tunnels.\(name)]\nhost = \"lab\"\nlocal = \"\(port):127.0.0.1:\(web)\"\n\n"
    }

    /// Saves `text` as editors do: a new file renamed over the old one.
    static func save(_ text: String, to path: String) throws {
        try FileSystem.writeAtomically(text, to: path)
    }

    static func until(_ timeout: Double = 5, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(50_000)
        }
        return condition()
    }

    static func names(_ f: FwdFixture, _ arguments: String...) throws -> [String] {
        let run = try f.fwd(arguments: ["status", "--json"] + arguments)
        #expect(run.ok, "\(run.stderr)")
        let rows = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [[String: Any]] ?? []
        return rows.compactMap { $0["name"] as? String }
    }

    @Test func rmOfARunningTunnelTakesItDownFirstAndLeavesNoOrphan() async throws {
        try await FwdFixture.with { f in
            let port = try LocalPort.free()
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            try f.write(config: Self.tunnel("wiki", port: port, web: f.web.port) + Self.tunnel("other", port: try LocalPort.free(), web: f.web.port))
            #expect(try f.fwd("up", "wiki").ok)
            #expect(f.fetchRetrying(port: port) != nil)
            let rm = try f.fwd("rm", "wiki")
            #expect(rm.ok, "\(rm.stderr)")
            #expect(rm.stdout.contains("wiki: down"), "\(rm.stdout)")
            #expect(!LocalPort.isAccepting(port: port), "the removed tunnel still forwards")
            #expect(try Self.names(f) == ["other"])
            let down = try f.fwd("down", "wiki")
            #expect(!down.ok && down.stderr.contains("wiki"), "\(down.stderr)")
            _ = try f.fwd("down", "--all")
        }
    }

    @Test func statusShowsEveryConfiguredTunnelAndTakesGroupsAndSeveralNames() async throws {
        try await FwdFixture.with { f in
            try f.write(config: Self.tunnel("alpha", port: 1, web: 1) + Self.tunnel("beta", port: 2, web: 2) + Self.tunnel("gamma", port: 3, web: 3)
                        + "[groups]\nab = [\"alpha\", \"beta\"]\n")
            #expect(try Self.names(f) == ["alpha", "beta", "gamma"], "never-started tunnels are missing")
            #expect(try Self.names(f, "ab") == ["alpha", "beta"])
            #expect(try Self.names(f, "gamma", "alpha") == ["alpha", "gamma"])
            let table = try f.fwd("status", "alpha")
            #expect(table.ok && table.stdout.contains("alpha") && table.stdout.contains("down"), "\(table.stdout)\(table.stderr)")
            let typo = try f.fwd("status", "alpah")
            #expect(!typo.ok && typo.stderr.contains("alpha"), "\(typo.stderr)")
        }
    }

    @Test func plainSSHKnowsATunnelTheMomentItIsAdded() async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            try f.write(config: "")
            #expect(try f.fwd("config", "install").ok)
            let add = try f.fwd("add", "wiki3", "--host", "lab", "-L", "\(try LocalPort.free()):127.0.0.1:\(f.web.port)")
            #expect(add.ok, "\(add.stderr)")
            let resolved = try f.run(["ssh", "-F", f.userSSHConfig, "-G", "wiki3"])
            let r = ResolvedHost(parsing: resolved.stdout)
            #expect(r.value("hostname") == "127.0.0.1", "\(resolved.stdout)")
            #expect(r.value("port") == String(f.sshd.port))
            #expect(try f.fwd("rm", "wiki3").ok)
            #expect(ResolvedHost(parsing: try f.run(["ssh", "-F", f.userSSHConfig, "-G", "wiki3"]).stdout).value("hostname") == "wiki3")
        }
    }

    /// A moved port is moved on the live master (one login in the sshd log), an unchanged tunnel keeps its
    /// forward, a removed one goes down, and a file that does not parse changes nothing and says why.
    @Test func savesAndReloadApplyTheFileToTheLiveMaster() async throws {
        try await FwdFixture.with { f in
            let (a, a2, b) = (try LocalPort.free(), try LocalPort.free(), try LocalPort.free())
            let web = f.web.port
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            try f.write(config: Self.tunnel("a", port: a, web: web) + Self.tunnel("b", port: b, web: web))
            #expect(try f.fwd("up", "a", "b").ok)
            let logins = { f.sshd.log().components(separatedBy: "Accepted publickey").count - 1 }
            #expect(logins() == 1)
            let master = f.masters()

            // Saved by an editor: a's port moves within a second or two, on the same master.
            try Self.save(Self.tunnel("a", port: a2, web: web) + Self.tunnel("b", port: b, web: web), to: f.configPath)
            #expect(Self.until { f.fetch(port: a2, timeout: 0.3) != nil && !LocalPort.isAccepting(port: a, timeout: 0.3) }, "the moved port was not applied")
            #expect(f.fetchRetrying(port: b) != nil)
            #expect(logins() == 1, "the master reconnected: \(logins()) logins")
            #expect(f.masters() == master)

            // b deleted from the file: it goes down and leaves the status.
            try Self.save(Self.tunnel("a", port: a2, web: web), to: f.configPath)
            #expect(Self.until { !LocalPort.isAccepting(port: b, timeout: 0.3) }, "the removed tunnel still forwards")
            #expect(Self.until { (try? Self.names(f)) == ["a"] })

            // A file that does not parse changes nothing, and its error shows in status, logs and reload.
            try Self.save("[tunnels.a]\nhost = \"lab\nlocal = \"\(a):127.0.0.1:\(web)\"\n", to: f.configPath)
            let logged = Self.until {
                ((try? f.fwd("logs", "--lines", "50").stdout) ?? "").contains("nothing was changed")
            }
            #expect(logged, "the broken save was not logged")
            #expect(f.fetchRetrying(port: a2) != nil, "a broken file took a running tunnel down")
            let status = try f.fwd("status")
            #expect(status.stderr.contains("\(f.configPath):2:"), "\(status.stderr)")
            #expect(status.stdout.contains("a"))
            let reload = try f.fwd("reload")
            #expect(!reload.ok && reload.stderr.contains("\(f.configPath):2:"), "\(reload.stdout)\(reload.stderr)")

            // Fixed, and applied by `fwd reload` as well.
            try Self.save(Self.tunnel("a", port: a, web: web), to: f.configPath)
            let fixed = try f.fwd("reload")
            #expect(fixed.ok, "\(fixed.stderr)")
            #expect(Self.until { f.fetch(port: a, timeout: 0.3) != nil })
            #expect(logins() == 1)
            _ = try f.fwd("down", "--all")
        }
    }
}
