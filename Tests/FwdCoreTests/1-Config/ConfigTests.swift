import Testing
@testable import FwdCore

@Suite struct ConfigTests {
    let path = "/cfg/fwd.toml"

    func diagnostics(_ text: String) -> [Diagnostic] {
        do {
            _ = try ConfigLoader.parse(text, path: path)
            return []
        } catch let ConfigError.invalid(d) {
            return d
        } catch {
            Issue.record("unexpected error \(error)")
            return []
        }
    }

    /// The retry policy per host: the backoff's ceiling and giving up after N attempts; bad values at line:col.
    @Test func retrySettingsAreReadAndValidated() throws {
        let tunnel = "[tunnels.a]\nhost = \"h\"\nlocal = \"8080:a:80\"\n"
        let config = try ConfigLoader.parse("[hosts.h]\nretry_max_delay = 10\nmax_attempts = 5\n\n" + tunnel, path: path)
        #expect(config.hosts["h"]?.retryMaxDelay == 10)
        #expect(config.hosts["h"]?.maxAttempts == 5)
        let defaults = try ConfigLoader.parse("[hosts.h]\nport = 22\n\n" + tunnel, path: path)
        #expect(defaults.hosts["h"]?.retryMaxDelay == nil && defaults.hosts["h"]?.maxAttempts == 0)
        let bad = diagnostics("[hosts.h]\nretry_max_delay = 0\nmax_attempts = \"many\"\n\n" + tunnel)
        #expect(bad.map { "\($0.line):\($0.column)" } == ["2:1", "3:1"], "\(bad)")
        #expect(bad.first?.message.contains("is 0; expected 1–3600") == true, "\(bad)")
        #expect(bad.last?.message.contains("must be an integer") == true, "\(bad)")
    }

    @Test func parsesTheDocumentedExample() throws {
        let text = """
        [hosts.office]                 # optional
        hostname = "a.example.com"
        user = "alice"
        port = 22
        jump = "bastion"
        identity = "~/.ssh/id_ed25519"
        forward_agent = false
        forward_x11 = false
        options = { Compression = "yes", ServerAliveInterval = "5" }

        [tunnels.intranet-wiki]
        host = "office"
        local = "8080:wiki.lan:80"
        probe = "http"

        [tunnels.laptop-db]
        host = "office"
        remote = "127.0.0.1:15432:localhost:5432"

        [tunnels.socks]
        host = "office"
        dynamic = "1080"

        [groups]
        work = ["intranet-wiki", "socks"]
        """
        let config = try ConfigLoader.parse(text, path: path)
        #expect(config.tunnels.map(\.name) == ["intranet-wiki", "laptop-db", "socks"])
        let office = try #require(config.hosts["office"])
        #expect(office.hostname == "a.example.com")
        #expect(office.user == "alice")
        #expect(office.port == 22)
        #expect(office.jump == "bastion")
        #expect(office.identity == "~/.ssh/id_ed25519")
        #expect(office.options.map(\.name) == ["Compression", "ServerAliveInterval"])
        let wiki = try #require(config.tunnel(named: "intranet-wiki"))
        #expect(wiki.host == "office")
        #expect(wiki.forwards == [try ForwardSpec.parse("8080:wiki.lan:80", kind: .local)])
        #expect(wiki.probe(for: wiki.forwards[0]) == .http)
        let socks = try #require(config.tunnel(named: "socks"))
        #expect(socks.probe(for: socks.forwards[0]) == .socks)
        let db = try #require(config.tunnel(named: "laptop-db"))
        #expect(db.probe(for: db.forwards[0]) == .remote)
        #expect(try config.resolve(["work"]).map(\.name) == ["intranet-wiki", "socks"])
        #expect(try config.resolve(["socks", "work"]).map(\.name) == ["socks", "intranet-wiki"])
    }

    @Test func forwardsMayBeAnArray() throws {
        let config = try ConfigLoader.parse("""
        [tunnels.both]
        host = "me@example.com:2222"
        local = [
          "8080:a:80",
          "8443:a:443",
        ]
        dynamic = ["1080"]
        """, path: path)
        #expect(config.tunnels[0].forwards.count == 3)
    }

    @Test func syntaxErrorNamesLineAndColumn() {
        let d = diagnostics("[tunnels.a]\nhost = \"x\"\nlocal = \"8080:a:80\n")
        #expect(d.count == 1)
        #expect(d.first?.line == 3)
        #expect(d.first?.description.hasPrefix("/cfg/fwd.toml:3:") == true)
    }

    @Test func unknownKeySuggestsTheClosest() {
        let d = diagnostics("""
        [hosts.office]
        hostnme = "a"

        [tunnels.a]
        host = "office"
        lcoal = "8080:a:80"
        local = "8081:a:80"
        """)
        #expect(d.map(\.line) == [2, 6])
        #expect(d[0].column == 1)
        #expect(d[0].message.contains("did you mean \"hostname\""))
        #expect(d[1].message.contains("did you mean \"local\""))
    }

    @Test func unknownTopLevelKey() {
        let d = diagnostics("tunnel = 1\n")
        #expect(d.first?.message.contains("unknown key \"tunnel\"") == true)
        #expect(d.first?.message.contains("did you mean \"tunnels\"") == true)
    }

    @Test func badForwardSpecPointsAtTheValue() {
        let d = diagnostics("""
        [tunnels.a]
        host = "h"
        local = ["8080:a:80", "99999:a:80"]
        """)
        #expect(d.count == 1)
        #expect(d.first?.line == 3)
        #expect(d.first?.column == 24)
        #expect(d.first?.message.contains("99999") == true)
    }

    @Test func wrongTypesAreNamed() {
        let d = diagnostics("""
        [hosts.h]
        port = "22"
        forward_agent = "yes"

        [tunnels.a]
        host = "h"
        local = 8080
        """)
        #expect(d.map(\.line) == [2, 3, 7])
        #expect(d[0].message.contains("must be an integer"))
        #expect(d[1].message.contains("true or false"))
        #expect(d[2].message.contains("must be a string"))
    }

    @Test func duplicateNamesAreErrors() {
        // TOML itself rejects a table defined twice.
        #expect(diagnostics("[tunnels.a]\nhost=\"h\"\nlocal=\"1:a:1\"\n[tunnels.a]\nhost=\"h\"\n").first?.line == 4)
        // Names are unique across tunnels, hosts and groups, ignoring case.
        let d = diagnostics("""
        [hosts.office]
        hostname = "x"

        [tunnels.Office]
        host = "office"
        local = "8080:a:80"

        [groups]
        office = ["Office"]
        """)
        #expect(d.map(\.line) == [4, 9])
        #expect(d[0].message.contains("already used by [hosts.office]"))
    }

    @Test func badValuesAreLocated() {
        let d = diagnostics("""
        [tunnels.a]
        host = "-oProxyCommand=touch /tmp/x"
        local = "8080:a:80"
        probe = "htp"

        [tunnels.b]
        host = "h"

        [groups]
        g = ["a", "nope"]
        """)
        #expect(d.map(\.line) == [2, 4, 6, 10])
        #expect(d[0].message.contains("must not start with '-'"))
        #expect(d[1].message.contains("did you mean \"http\""))
        #expect(d[2].message.contains("has no forwards"))
        #expect(d[3].message.contains("\"nope\", which is not a tunnel"))
    }

    @Test func publicBindNeedsExplicitOptIn() throws {
        let d = diagnostics("[tunnels.a]\nhost = \"h\"\nlocal = \"0.0.0.0:8080:a:80\"\n")
        #expect(d.first?.message.contains("public = true") == true)
        let ok = try ConfigLoader.parse("[tunnels.a]\nhost = \"h\"\nlocal = \"0.0.0.0:8080:a:80\"\npublic = true\n", path: path)
        #expect(ok.tunnels[0].isPublic)
        #expect(diagnostics("[tunnels.a]\nhost = \"h\"\nremote = \"*:8080:a:80\"\n").first?.message.contains("public = true") == true)
    }

    @Test func probeMustFitAForward() {
        let d = diagnostics("[tunnels.a]\nhost = \"h\"\ndynamic = \"1080\"\nprobe = \"http\"\n")
        #expect(d.first?.line == 4)
    }

    @Test func probeTargetIsReadAndValidatedWithItsPosition() throws {
        let ok = try ConfigLoader.parse("[tunnels.a]\nhost = \"h\"\ndynamic = \"1080\"\nprobe_target = \"wiki.lan:80\"\n", path: path)
        #expect(ok.tunnels[0].probeTarget == SocksTarget(host: "wiki.lan", port: 80))
        #expect(try ConfigLoader.parse("[tunnels.a]\nhost = \"h\"\ndynamic = \"1080\"\n", path: path).tunnels[0].probeTarget == nil)

        let bad = diagnostics("[tunnels.a]\nhost = \"h\"\ndynamic = \"1080\"\nprobe_target = \"wiki.lan\"\n")
        #expect(bad.count == 1)
        #expect(bad.first?.line == 4)
        #expect(bad.first?.column == 17)
        #expect(bad.first?.message == "probe_target \"wiki.lan\" must be HOST:PORT (e.g. wiki.lan:80), with an IPv6 address in brackets")

        let port = diagnostics("[tunnels.a]\nhost = \"h\"\ndynamic = \"1080\"\nprobe_target = \"wiki.lan:0\"\n")
        #expect(port.first?.message.contains("needs a port from 1 to 65535") == true)
        let type = diagnostics("[tunnels.a]\nhost = \"h\"\ndynamic = \"1080\"\nprobe_target = 80\n")
        #expect(type.first?.line == 4)
        let noDynamic = diagnostics("[tunnels.a]\nhost = \"h\"\nlocal = \"8080:a:80\"\nprobe_target = \"wiki.lan:80\"\n")
        #expect(noDynamic.first?.line == 4)
        #expect(noDynamic.first?.message.contains("has no dynamic forward") == true)
    }

    @Test func protocolProbesFitLocalAndRemoteForwards() throws {
        let text = "[tunnels.a]\nhost = \"h\"\nremote = \"15432:localhost:5432\"\nprobe = \"postgres\"\n"
        let tunnel = try ConfigLoader.parse(text, path: path).tunnels[0]
        #expect(tunnel.probe(for: tunnel.forwards[0]) == .postgres)
        #expect(diagnostics("[tunnels.a]\nhost = \"h\"\ndynamic = \"1080\"\nprobe = \"redis\"\n").first?.line == 4)
    }

    @Test func missingFileIsAnEmptyConfig() throws {
        let config = try ConfigLoader.load(path: "/nonexistent/fwd.toml")
        #expect(config.tunnels.isEmpty)
    }

    @Test func unknownNameOnTheCommandLineSuggests() throws {
        let config = try ConfigLoader.parse("[tunnels.wiki]\nhost = \"h\"\nlocal = \"8080:a:80\"\n", path: path)
        #expect(throws: ConfigError.unknownName("wkii", suggestion: "wiki")) { try config.resolve(["wkii"]) }
    }
}
