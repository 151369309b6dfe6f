import Testing
@testable import FwdCore

@Suite struct ValidationTests {
    @Test(arguments: ["wiki", "intranet-wiki", "db.prod", "a_b", "0day"])
    func goodNames(_ name: String) {
        #expect(Validation.nameProblem(name) == nil)
    }

    @Test(arguments: ["", "-wiki", ".hidden", "a b", "a\nb", "/etc/passwd", "../x", "a/b", "ä", String(repeating: "a", count: 65)])
    func badNames(_ name: String) {
        #expect(Validation.nameProblem(name) != nil)
    }

    @Test(arguments: ["office", "a.example.com", "alice@a.example.com", "alice@a.example.com:2222", "[::1]:22", "192.0.2.1", "[fe80::1%eth0]", "alice@[fe80::1%eth0]:22"])
    func goodHosts(_ host: String) {
        #expect(Validation.hostProblem(host) == nil)
    }

    @Test(arguments: ["-oProxyCommand=sh", "a b", "a\nProxyCommand sh", "a\tb", "a#b", "a\"b", "$(reboot)", "a;b", "", "fe80::1%eth0", "j%k", "a%h", "[fe80::1%eth0]%k", "[a%b]"])
    func badHosts(_ host: String) {
        #expect(Validation.hostProblem(host) != nil)
    }

    @Test(arguments: ["ProxyCommand", "proxycommand", "LocalCommand", "PermitLocalCommand", "Include", "Match", "Host",
                      "KnownHostsCommand", "RemoteCommand", "StrictHostKeyChecking", "UserKnownHostsFile", "PKCS11Provider",
                      "ControlPath", "LocalForward", "Compression=yes", "Bad Name", "1abc", ""])
    func forbiddenOrMalformedOptionNames(_ name: String) {
        #expect(Validation.optionNameProblem(name) != nil)
    }

    @Test func allowedOptions() {
        #expect(Validation.optionNameProblem("Compression") == nil)
        #expect(Validation.optionValueProblem("Compression", "yes") == nil)
        #expect(Validation.optionValueProblem("SendEnv", "LANG LC_ALL") == nil)
    }

    @Test(arguments: ["yes\nProxyCommand sh -c x", "yes\rLocalCommand x", "\"yes\"", "yes # c", "-x", "", "a=b", "x\\y"])
    func smuggledOptionValues(_ value: String) {
        #expect(Validation.optionValueProblem("Compression", value) != nil)
    }

    /// The allow-list: reviewed keywords pass with a well-formed value; refused ones say why; others are unknown.
    @Test func optionsAreAnAllowList() {
        for (name, value) in [("Ciphers", "+aes128-ctr,chacha20-poly1305@openssh.com"), ("HostKeyAlias", "db.prod"), ("LogLevel", "verbose"),
                              ("ServerAliveInterval", "5"), ("IPQoS", "af21 cs1"), ("SendEnv", "LANG LC_*"), ("BindAddress", "::1"),
                              ("AddressFamily", "inet6"), ("RekeyLimit", "1G 1h"), ("IdentitiesOnly", "yes")] {
            #expect(Validation.optionNameProblem(name) == nil, "\(name)")
            #expect(Validation.optionValueProblem(name, value) == nil, "\(name) \(value)")
        }
        for name in ["XAuthLocation", "NoHostAuthenticationForLocalhost", "VerifyHostKeyDNS", "StreamLocalBindMask",
                     "ForkAfterAuthentication", "UpdateHostKeys", "GatewayPorts", "SetEnv", "BatchMode", "ProxyCommand"] {
            let problem = Validation.optionNameProblem(name)
            #expect(problem?.hasPrefix("option \(name) is not allowed in fwd's options: ") == true, "\(problem ?? "accepted")")
        }
        #expect(Validation.optionNameProblem("BatchMode")?.contains("always") == false, "the old, untrue batchmode message")
        #expect(Validation.optionNameProblem("Frobnicate")?.contains("not one of the options fwd passes through") == true)
        #expect(Validation.optionNameProblem("Frobnicate")?.contains("docs/configuration.md") == true)
    }

    @Test(arguments: [("HostKeyAlias", "a|id>FILE"), ("HostKeyAlias", "%k"), ("Ciphers", "aes;id"), ("Ciphers", "$(id)"),
                      ("SendEnv", "A`id`"), ("Compression", "maybe"), ("LogLevel", "QUIET"), ("ConnectTimeout", "99999"),
                      ("IPQoS", "a b c"), ("BindAddress", "-x"), ("SendEnv", "%h"), ("RekeyLimit", "1G%"), ("Ciphers", "a,,b"),
                      ("CanonicalDomains", "*.x"), ("HostKeyAlias", "a b"), ("ServerAliveInterval", "5s"), ("Ciphers", "é")])
    func optionValuesHaveAStrictForm(_ name: String, _ value: String) {
        #expect(Validation.optionValueProblem(name, value) != nil, "\(name) = \(value)")
    }

    @Test func percentOnlyInABracketedZoneAndNeverInAJump() {
        #expect(Validation.jumpHopProblem("bastion") == nil)
        #expect(Validation.jumpHopProblem("j%k")?.contains("ProxyJump") == true)
        #expect(Validation.jumpHopProblem("[fe80::1%eth0]") != nil)
        #expect(Validation.hostProblem("[fe80::1%eth0]:22") == nil)
        #expect(Validation.userProblem("host$") == nil)
        #expect(Validation.userProblem("a$HOME") != nil)
    }

    @Test func injectionThroughConfigIsRejected() {
        let attempts = [
            // A newline inside a value would start a new ssh_config directive.
            "[hosts.h]\nhostname = \"a\\nProxyCommand touch /tmp/pwned\"\n",
            "[hosts.h]\nuser = \"a\\nLocalCommand x\"\n",
            "[hosts.h]\noptions = { ProxyCommand = \"sh -c x\" }\n",
            "[hosts.h]\noptions = { Compression = \"yes\\nInclude /tmp/evil\" }\n",
            "[hosts.h]\noptions = { \"Compression yes\\nLocalCommand\" = \"x\" }\n",
            "[hosts.h]\nidentity = \"/k\\nProxyCommand x\"\n",
            "[hosts.h]\njump = \"-oProxyCommand=x\"\n",
            "[tunnels.a]\nhost = \"-oProxyCommand=x\"\nlocal = \"8080:a:80\"\n",
            "[tunnels.a]\nhost = \"h\"\nlocal = \"8080:a:80\\n    LocalCommand x\"\n",
            "[tunnels.\"a\\nHost *\"]\nhost = \"h\"\nlocal = \"8080:a:80\"\n",
            "[tunnels.\"/etc/passwd\"]\nhost = \"h\"\nlocal = \"8080:a:80\"\n",
            "[tunnels.a]\nhost = \"h\"\nlocal = \"/tmp/../etc/x.sock:a:80\"\nprobe=\"none\"\n",
        ]
        for text in attempts {
            #expect(throws: ConfigError.self, "\(text)") { try ConfigLoader.parse(text, path: "f") }
        }
    }

    /// Injections the first list misses: other keys, other separators, Unicode that hides a character, names that
    /// are paths. Every one is refused with a located error.
    @Test(arguments: [
        // A newline (or CR) in every other string value.
        "[hosts.h]\njump = \"b\\nProxyCommand sh\"\n",
        "[hosts.h]\nhostname = \"a\\rProxyCommand sh\"\n",
        "[tunnels.a]\nhost = \"h\\nProxyCommand sh\"\nlocal = \"1:a:1\"\n",
        "[tunnels.a]\nhost = \"h\"\nremote = \"1:a:1\\nLocalCommand x\"\n",
        "[tunnels.a]\nhost = \"h\"\ndynamic = [\"1080\\nInclude /x\"]\n",
        "[tunnels.a]\nhost = \"h\"\nlocal = \"1:a:1\"\nprobe = \"http\\nx\"\n",
        "[tunnels.a]\nhost = \"h\"\nlocal = \"1:a:1\"\n[groups]\ng = [\"a\\nHost *\"]\n",
        // A leading '-' wherever ssh could take it for an option.
        "[hosts.h]\nhostname = \"-oProxyCommand=sh\"\n",
        "[hosts.h]\nuser = \"-oProxyCommand=sh\"\n",
        "[hosts.h]\nidentity = \"-oProxyCommand=sh\"\n",
        "[hosts.h]\njump = \"ok,-oProxyCommand=sh\"\n",
        "[tunnels.a]\nhost = \"h\"\nlocal = \"1:-oProxyCommand=sh:1\"\n",
        "[tunnels.a]\nhost = \"alice@-oProxyCommand=sh\"\nlocal = \"1:a:1\"\n",
        // ProxyCommand, LocalCommand, Include smuggled through option names and table names.
        "[hosts.h]\noptions = { PROXYCOMMAND = \"sh\" }\n",
        "[hosts.h]\noptions = { \"ProxyCommand=sh\" = \"x\" }\n",
        "[hosts.h]\noptions = { \"Pr\\u043exyCommand\" = \"sh\" }\n",
        "[hosts.h]\noptions = { include = \"/etc/passwd\" }\n",
        "[hosts.h]\noptions = { Compression = \"yes\", PermitLocalCommand = \"yes\", LocalCommand = \"sh\" }\n",
        "[hosts.\"h ProxyCommand sh\"]\nhostname = \"a\"\n",
        "[tunnels.\"a\\tLocalCommand sh\"]\nhost = \"h\"\nlocal = \"1:a:1\"\n",
        "[tunnels.a]\nhost = \"h\"\nlocal = \"1:a:1\"\n[groups]\n\"g Include /x\" = [\"a\"]\n",
        // Socket paths that climb out with '..', also behind a combining mark that hides the '/' from Characters.
        "[tunnels.a]\nhost = \"h\"\nremote = \"/tmp/../../etc/x.sock:127.0.0.1:1\"\n",
        "[tunnels.a]\nhost = \"h\"\nlocal = \"1:/run/../etc/t.sock\"\n",
        "[tunnels.a]\nhost = \"h\"\nlocal = \"/tmp/../\\u0301x.sock:a:1\"\n",
        "[tunnels.a]\nhost = \"h\"\nlocal = \"[/tmp/..]:a:1\"\n",
        // Names that are absolute or relative paths.
        "[hosts.\"/etc/passwd\"]\nhostname = \"a\"\n",
        "[tunnels.\"../x\"]\nhost = \"h\"\nlocal = \"1:a:1\"\n",
        "[tunnels.a]\nhost = \"h\"\nlocal = \"1:a:1\"\n[groups]\n\"/tmp/g\" = [\"a\"]\n",
    ])
    func moreInjectionsAreRejectedWithALocation(_ text: String) {
        do {
            let config = try ConfigLoader.parse(text, path: "/c/fwd.toml")
            Issue.record("accepted: \(String(reflecting: text)) → \(config.tunnels.map(\.name)) \(config.hosts.keys.sorted())")
        } catch {
            guard case .invalid(let diagnostics) = error else {
                Issue.record("not located: \(error)")
                return
            }
            #expect(diagnostics.allSatisfy { $0.description.hasPrefix("/c/fwd.toml:\($0.line):\($0.column): ") })
        }
    }

    /// Found by FuzzTests: what fwd accepts must read back the same from its own text and from ssh_config.
    @Test func oddSocketPathsRoundTrip() throws {
        for (text, kind) in [("[=/tmp/x.sock]:h:1", ForwardKind.local), ("[/odd:\u{301}path]:h:1", .local), ("1:[=run/t.sock]", .local)] {
            let spec = try ForwardSpec.parse(text, kind: kind)
            #expect(try ForwardSpec.parse(spec.text, kind: kind) == spec, "\(spec.text)")
            #expect(try ForwardSpec.parse(spec.sshArgument, kind: kind).target == spec.target)
            #expect(!spec.configLine.contains(" ="), "ssh_config would drop the '=': \(spec.configLine)")
        }
    }

    /// Found by FuzzTests: toml++ (inside TOMLKit) aborts on these in a debug build; fwd must report them instead.
    @Test(arguments: ["[=]\n", "[#]\n", "[é]\n", "[\n", "[ #x]\n", "[[ [x]]\n", "[[[x]]]\n", "[\u{1b}[31mhosts.h]\n",
                      "a = [}]\n", "a = [1, }]\n", "a = {b=[}]}\n", "a = [ # c\n}]\n", "a = 1979-05-27 1\n",
                      "a = [1979-05-27Tfalse07:32:00Z]\n", "a = 0001-01-01 0\n", "x = \"a\u{7}\"\n"])
    func inputsThatCrashedTheTOMLParserAreReported(_ text: String) {
        #expect(throws: ConfigError.self) { try ConfigLoader.parse(text, path: "f") }
    }

    @Test func printableShowsControlCharacters() {
        #expect(Validation.printable("a\nb\u{1b}") == "a\\nb\\u{1b}")
    }
}
