import Testing

@testable import FwdCore

/// Port ranges (`60000-60009:ftp.lan:60000-60009`): fwd's extension of ssh's forward syntax.
struct ForwardRangeTests {
    @Test func aRangeExpandsToOneForwardPerPortInOrder() throws {
        let r = try ForwardRange.parse("60000-60009:ftp.lan:60000-60009", kind: .local)
        #expect(r.isRange)
        #expect(r.text == "60000-60009:ftp.lan:60000-60009")
        #expect(r.specs.map(\.sshArgument) == (60000...60009).map { "127.0.0.1:\($0):ftp.lan:\($0)" })
        #expect(r.specs.map(\.configLine) == (60000...60009).map { "LocalForward 127.0.0.1:\($0) ftp.lan:\($0)" })
    }

    @Test func shiftedRangesBindAddressesIPv6AndRemoteForwards() throws {
        let shifted = try ForwardRange.parse("localhost:7000-7002:[2001:db8::5]:8000-8002", kind: .local)
        #expect(shifted.text == "localhost:7000-7002:[2001:db8::5]:8000-8002")
        #expect(shifted.specs.map(\.sshArgument) == ["localhost:7000:[2001:db8::5]:8000", "localhost:7001:[2001:db8::5]:8001", "localhost:7002:[2001:db8::5]:8002"])
        let remote = try ForwardRange.parse("9000-9001:127.0.0.1:3000-3001", kind: .remote)
        #expect(remote.specs.map(\.configLine) == ["RemoteForward 127.0.0.1:9000 127.0.0.1:3000", "RemoteForward 127.0.0.1:9001 127.0.0.1:3001"])
        let one = try ForwardRange.parse("5000-5000:h:6000-6000", kind: .local)
        #expect(one.isRange && one.specs.map(\.text) == ["5000:h:6000"])
    }

    @Test func aPlainSpecIsOneForwardAndNoRange() throws {
        let r = try ForwardRange.parse("8080:wiki.lan:80", kind: .local)
        #expect(try !r.isRange && r.specs == [try ForwardSpec.parse("8080:wiki.lan:80", kind: .local)] && r.text == "8080:wiki.lan:80")
        // Service names may contain '-' and digits; they stay one port.
        #expect(try ForwardRange.parse("pop-3:mail.lan:pop-3", kind: .local).specs.map(\.text) == ["110:mail.lan:110"])
    }

    @Test func theLimitIsAHundredPorts() throws {
        #expect(ForwardRange.maxPorts == 100)
        #expect(try ForwardRange.parse("1000-1099:h:2000-2099", kind: .local).specs.count == 100)
        #expect(reason("1000-1100:h:2000-2100", .local)?.contains("at most 100 ports per range") == true)
    }

    static let rejections: [(String, ForwardKind, String)] = [
        ("8000-8010:a:8000-8009", .local, "the listen range has 11 ports and the target range 10"),
        ("8000-8009:a:80", .local, "the listen side is a port range but the target is one port"),
        ("80:a:8000-8009", .local, "the target is a port range but the listen side is one port"),
        ("9-1:a:1-9", .local, "runs backwards; write the lower port first (1-9)"),
        ("65530-65540:a:1-11", .local, "goes beyond 65535"),
        ("0-9:a:1-10", .remote, "starts at 0"),
        ("7-:a:7-", .local, "\"7-\" is not a port range"),
        ("7-8-9:a:7-8-9", .local, "is not a port range"),
        ("1080-1081", .dynamic, "a port range needs a target"),
        ("1080-1081", .remote, "a port range needs a target"),
        ("8000-8001:/tmp/s.sock", .local, "a UNIX socket target cannot take a port range"),
        // A bracketed field is literal, so this is no range (and no port).
        ("[8000-8001]:a:8000-8001", .local, "neither a number"),
    ]

    @Test func rejectsWhatSSHCouldNotMatchPortForPort() {
        for (text, kind, because) in Self.rejections {
            let why = reason(text, kind)
            #expect(why?.contains(because) == true, "\(kind.flag) \(text): \(why ?? "accepted")")
        }
    }

    @Test func everyExpandedForwardMustFitSSHConfig() throws {
        // "127.0.0.1:" + "9999:" + host + ":9999" is 255 bytes with a 235-byte host; port 10000 adds 2.
        let host = String(repeating: "b", count: 235)
        #expect(try ForwardRange.parse("9998-9999:\(host):9998-9999", kind: .local).specs.last?.sshArgument.utf8.count == 255)
        #expect(reason("9999-10000:\(host):9999-10000", .local)?.contains("ssh_config truncates") == true)
    }

    @Test func singleSpecParsingRefusesARange() {
        #expect(reasonSingle("60000-60009:h:60000-60009")?.contains("a port range stands for several forwards") == true)
    }

    @Test func aTunnelKeepsTheWrittenFormAndProbesNoRangePort() throws {
        let control = try ForwardRange.parse("2121:ftp.lan:21", kind: .local)
        let passive = try ForwardRange.parse("60000-60002:ftp.lan:60000-60002", kind: .local)
        let t = Tunnel(name: "files", host: "office", written: [control, passive], probe: .banner)
        #expect(t.forwards.count == 4)
        #expect(t.written.map(\.text) == ["2121:ftp.lan:21", "60000-60002:ftp.lan:60000-60002"])
        #expect(t.forwards.map { t.probe(for: $0) } == [.banner, .none, .none, .none])
        #expect(ConfigEditor.table(for: t).contains(#"local = ["2121:ftp.lan:21", "60000-60002:ftp.lan:60000-60002"]"#))
        #expect(ForwardStatus.initial(for: t).map(\.range) == [nil] + Array(repeating: "60000-60002:ftp.lan:60000-60002", count: 3))
    }

    @Test func theFragmentGetsOneLocalForwardLinePerPort() throws {
        let config = try ConfigLoader.parse("""
        [tunnels.files]
        host = "office"
        local = ["2121:ftp.lan:21", "60000-60002:ftp.lan:60000-60002"]
        """, path: "fwd.toml")
        let fragment = SSHConfigFiles.tunnelBlocks(config, paths: FwdPaths(config: "/tmp/c", stateDirectory: "/tmp/s", userSSHConfig: "/tmp/u"), resolved: [:])
        for port in 60000...60002 { #expect(fragment.contains("    LocalForward 127.0.0.1:\(port) ftp.lan:\(port)\n"), "\(fragment)") }
        #expect(!fragment.contains("60000-60002"))
    }

    @Test func configErrorsNameFileLineAndColumn() {
        let text = """
        [tunnels.files]
        host = "office"
        local = ["2121:ftp.lan:21", "60000-60010:ftp.lan:60000-60009"]
        """
        #expect(throws: ConfigError.invalid([Diagnostic(file: "fwd.toml", line: 3, column: 30,
            message: #"bad -L forward "60000-60010:ftp.lan:60000-60009": the listen range has 11 ports and the target range 10; both sides need the same number"#)])) {
            try ConfigLoader.parse(text, path: "fwd.toml")
        }
    }

    @Test func aPortUsedTwiceInOneTunnelIsAConfigError() {
        let text = """
        [tunnels.files]
        host = "office"
        local = ["8000-8009:a:8000-8009", "8005:b:80"]
        dynamic = "9000"
        remote = ["8005:c:80", "0:c:81", "0:c:82"]
        """
        #expect(throws: ConfigError.invalid([Diagnostic(file: "fwd.toml", line: 3, column: 36,
            message: #"local forward "8005:b:80" listens on local port 8005, as "8000-8009:a:8000-8009" in the same tunnel does; each port can be forwarded once"#)])) {
            try ConfigLoader.parse(text, path: "fwd.toml")
        }
        #expect(throws: ConfigError.self) { try ConfigLoader.parse("[tunnels.x]\nhost = \"o\"\nlocal = \"9000:a:1\"\ndynamic = \"9000\"\n", path: "p") }
    }

    func reason(_ text: String, _ kind: ForwardKind) -> String? {
        do {
            _ = try ForwardRange.parse(text, kind: kind)
            return nil
        } catch {
            return error.reason
        }
    }

    func reasonSingle(_ text: String) -> String? {
        do {
            _ = try ForwardSpec.parse(text, kind: .local)
            return nil
        } catch {
            return error.reason
        }
    }
}

/// `domains` on a dynamic tunnel and the PAC script `fwd pac` prints from them.
struct PACTests {
    static let config = """
    [tunnels.corp]
    host = "office"
    dynamic = "1080"
    domains = ["*.corp.lan", "Wiki.Example.com"]

    [tunnels.lab]
    host = "lab"
    dynamic = "[::1]:1081"
    domains = ["git.lab.test"]
    """

    @Test func domainsAreReadLowercased() throws {
        let config = try ConfigLoader.parse(Self.config, path: "fwd.toml")
        #expect(config.tunnel(named: "corp")?.domains == ["*.corp.lan", "wiki.example.com"])
    }

    @Test func theScriptSendsOnlyTheDomainsToTheirSOCKSPortAndNeverResolves() throws {
        let config = try ConfigLoader.parse(Self.config, path: "fwd.toml")
        let script = PACScript.render(config.tunnels.compactMap(PACScript.Route.init), source: "fwd.toml")
        #expect(script.contains(#"if (shExpMatch(host, "*.corp.lan") ||"#))
        #expect(script.contains(#"host === "wiki.example.com")"#))
        #expect(script.contains(#"return "SOCKS5 127.0.0.1:1080; SOCKS 127.0.0.1:1080";"#))
        #expect(script.contains(#"if (host === "git.lab.test")"#) && script.contains(#"return "SOCKS5 [::1]:1081; SOCKS [::1]:1081";"#))
        #expect(script.hasSuffix("  return \"DIRECT\";\n}\n"))
        for resolving in ["dnsResolve", "isInNet", "isResolvable", "myIpAddress", "dnsDomainIs"] {
            #expect(!script.contains(resolving), "\(resolving)")
        }
    }

    @Test(arguments: [
        ("\"\"", "a domain cannot be empty"),
        ("\"a..b\"", "has an empty label"),
        ("\".corp.lan\"", "has an empty label"),
        ("\"x*.corp.lan\"", "has a '*' other than a leading"),
        ("\"*\"", "has a '*' other than a leading"),
        ("\"a\\\"b\"", "contains '\"'"),
        ("\"-a.lan\"", "starts or ends with '-'"),
        ("\"wiki.lan/x\"", "contains '/'"),
        ("3", "must be a name in quotes"),
    ])
    func badDomainsAreRefusedWithTheirPlace(_ value: String, _ because: String) {
        let text = "[tunnels.corp]\nhost = \"office\"\ndynamic = \"1080\"\ndomains = [\(value)]\n"
        do {
            _ = try ConfigLoader.parse(text, path: "fwd.toml")
            Issue.record("accepted \(value)")
        } catch {
            guard case .invalid(let d) = error else { Issue.record("\(error)"); return }
            #expect(d.count == 1 && d[0].line == 4 && d[0].message.contains(because), "\(d)")
        }
    }

    @Test func domainsNeedADynamicForward() {
        let text = "[tunnels.wiki]\nhost = \"office\"\nlocal = \"8080:wiki.lan:80\"\ndomains = [\"wiki.lan\"]\n"
        #expect(throws: ConfigError.invalid([Diagnostic(file: "fwd.toml", line: 4, column: 1,
            message: "domains go with a dynamic forward: `fwd pac` sends those names to the tunnel's SOCKS port; add dynamic = \"1080\" (or another port) to [tunnels.wiki]")])) {
            try ConfigLoader.parse(text, path: "fwd.toml")
        }
    }

    @Test func socksURLsUseSocks5hAndALoopbackAddressForWildcards() throws {
        #expect(try ForwardSpec.parse("1080", kind: .dynamic).socksURL == "socks5h://127.0.0.1:1080")
        #expect(try ForwardSpec.parse("127.0.0.1:1080", kind: .dynamic).socksURL == "socks5h://127.0.0.1:1080")
        #expect(try ForwardSpec.parse("*:1080", kind: .dynamic).socksURL == "socks5h://127.0.0.1:1080")
        #expect(try ForwardSpec.parse("[::1]:1080", kind: .dynamic).socksURL == "socks5h://[::1]:1080")
        #expect(try ForwardSpec.parse("8080:h:80", kind: .local).socksURL == nil)
    }
}
