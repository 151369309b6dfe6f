import Foundation
@testable import FwdCore
import FwdLab
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A real browser with the PAC script from `fwd pac`: headless Chromium (Debian's `chromium`) in C, with its
/// own DNS switched off. The intranet name is known only to the SSH server: A's /etc/hosts (which `ip netns
/// exec` mounts from /etc/netns/A/hosts for sshd) maps wiki.corp.lan to B, which C cannot route to. The
/// outside page is on an address only C has (198.18.3.1 on C's loopback), which A cannot route to. So each
/// page loads only if the PAC script sent it the right way.
@Suite(.serialized, .enabled(if: isRoot, "needs root for network namespaces"))
struct BrowserTests {
    static let chromium = "/usr/bin/chromium"
    static let outsideAddress = "198.18.3.1"
    static let outsideBody = "<p>outside page, not on the intranet</p>"

    /// `chromium --headless --dump-dom URL` inside C: the page's DOM, or nil with what Chromium said.
    func load(_ f: FaultFixture, _ url: String, proxy: [String]) throws -> (dom: String, log: String) {
        let id = UUID().uuidString.prefix(8)
        let out = "\(f.dir)/chromium-\(id).out", err = "\(f.dir)/chromium-\(id).err"
        let argv = [Self.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--user-data-dir=\(f.dir)/chromium-profile-\(id)",
                    // No local name resolution: a name that loads went to the proxy as a name. Chromium applies
                    // the rule to IP literals too, so the proxy's address and the outside page's are excepted.
                    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE \(Self.outsideAddress)",
                    "--timeout=15000", "--dump-dom"] + proxy + [url]
        let script = "exec \"$0\" \"$@\" 2>\"\(err)\""
        let child = try ChildProcess(f.topology.exec(f.topology.c, ["/bin/sh", "-c", script] + argv), outputPath: out)
        if child.waitExit(timeout: 60) == nil {
            child.kill()
            throw CommandFailed(description: "chromium did not finish loading \(url) in 60 s")
        }
        return (FileSystem.read(out) ?? "", FileSystem.read(err) ?? "")
    }

    @Test func chromiumWithFwdsPACLoadsIntranetNamesThroughTheTunnelAndTheRestDirectly() async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.chromium) else {
            print("skipped the browser test: needs chromium (apt-get install chromium; .ci/run installs it)")
            return
        }
        try await FaultFixture.with { f in
            // Appended in place: sshd's mount of this file (made by `ip netns exec`) sees the same inode.
            let hosts = try #require(FileHandle(forWritingAtPath: "/etc/netns/\(f.topology.a)/hosts"))
            hosts.seekToEndOfFile()
            hosts.write(Data("\(Topology.serviceAddress) wiki.corp.lan\n".utf8))
            try hosts.close()
            try run(["ip", "-n", f.topology.c, "addr", "add", "\(Self.outsideAddress)/32", "dev", "lo"])
            let outside = try inNamespace(f.topology.c) { try TinyHTTPServer(host: Self.outsideAddress, port: 8081, body: Self.outsideBody) }
            defer { outside.stop() }

            let socksPort = 11080
            try f.write(config: """
            [tunnels.corp]
            host = "lab"
            dynamic = "\(socksPort)"
            domains = ["*.corp.lan", "wiki.example.com"]
            """)
            let up = try f.fwd("up", "corp")
            try #require(up.ok, "\(up.stderr)")

            // status shows the proxy URL to copy, in the table and in --json.
            let status = try f.fwd("status").stdout
            #expect(status.contains("-D 127.0.0.1:\(socksPort) (socks5h://127.0.0.1:\(socksPort))"), "\(status)")
            let json = try f.fwd("status", "--json").stdout
            #expect(json.contains("\"socks_url\" : \"socks5h://127.0.0.1:\(socksPort)\""), "\(json)")

            let pac = try f.fwd("pac")
            try #require(pac.ok, "\(pac.stderr)")
            #expect(pac.stdout.contains("return \"SOCKS5 127.0.0.1:\(socksPort); SOCKS 127.0.0.1:\(socksPort)\";"))
            let pacURL = "--proxy-pac-url=data:application/x-ns-proxy-autoconfig;base64," + Data(pac.stdout.utf8).base64EncodedString()

            let intranet = try load(f, "http://wiki.corp.lan:\(FaultFixture.webPort)/", proxy: [pacURL])
            #expect(intranet.dom.contains(f.pageBody), "intranet page by name through the tunnel: \(intranet.dom) \(intranet.log.suffix(1500))")
            let direct = try load(f, "http://\(Self.outsideAddress):8081/", proxy: [pacURL])
            #expect(direct.dom.contains(Self.outsideBody), "outside page directly: \(direct.dom) \(direct.log.split(separator: "\n").filter { !$0.contains("dbus") }.suffix(10))")

            // Controls: without the PAC script the intranet name does not load, and through the proxy the
            // outside page does not (the server cannot reach it), so each load above went the way the script said.
            let noProxy = try load(f, "http://wiki.corp.lan:\(FaultFixture.webPort)/", proxy: [])
            #expect(!noProxy.dom.contains(f.pageBody), "\(noProxy.dom)")
            let viaProxy = try load(f, "http://\(Self.outsideAddress):8081/", proxy: ["--proxy-server=socks5://127.0.0.1:\(socksPort)"])
            #expect(!viaProxy.dom.contains(Self.outsideBody), "\(viaProxy.dom)")
        }
    }
}
