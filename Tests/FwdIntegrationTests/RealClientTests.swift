import Foundation
@testable import FwdCore
import FwdLab
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The seed's scenarios with the clients people use (curl for FTP, psql, mysql), real servers from Debian
/// packages, the real fwd binary and the fixture's private sshd. Servers listen on 127.0.0.2, the "far side":
/// the client only reaches them through the forward on 127.0.0.1.
@Suite(.serialized) struct RealClientTests {
    func lab(_ f: FwdFixture) throws {
        try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
    }

    @Test func curlDownloadsAFileInPassiveModeThroughTheFTPPreset() async throws {
        guard RealTools.available("the FTP test", [("/usr/bin/curl", "curl"), ("python3:pyftpdlib", "python3-pyftpdlib")]) else { return }
        try await FwdFixture.with { f in
            try lab(f)
            let root = f.dir + "/ftp-root"
            try FileSystem.makePrivateDirectory(root)
            let content = "a file on the FTP server, \(UUID().uuidString)\n"
            try FileSystem.writeAtomically(content, to: root + "/report.txt")
            let serverPort = try LocalPort.free(host: "127.0.0.2"), controlPort = try LocalPort.free()
            let passive = try PortRange.free(count: 10)
            let script = """
            import sys
            from pyftpdlib.authorizers import DummyAuthorizer
            from pyftpdlib.handlers import FTPHandler
            from pyftpdlib.servers import FTPServer
            root, host, port, low, high = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
            authorizer = DummyAuthorizer()
            authorizer.add_anonymous(root)
            FTPHandler.authorizer = authorizer
            FTPHandler.passive_ports = range(low, high + 1)
            FTPServer((host, port), FTPHandler).serve_forever()
            """
            let server = try ChildProcess([RealTools.python, "-c", script, root, "127.0.0.2", "\(serverPort)", "\(passive.lowerBound)", "\(passive.upperBound)"],
                                          outputPath: f.dir + "/ftpd.log")
            defer { server.kill() }
            #expect(f.waitForPort(serverPort, host: "127.0.0.2"), "pyftpdlib did not start: \(FileSystem.read(f.dir + "/ftpd.log") ?? "")")

            let range = "\(passive.lowerBound)-\(passive.upperBound)"
            let add = try f.fwd("add", "files", "--template", "ftp", "--host", "lab", "--target", "127.0.0.2",
                                "--port", "\(controlPort)", "--target-port", "\(serverPort)", "--passive", range)
            #expect(add.ok, "\(add.stderr)")
            let config = FileSystem.read(f.configPath) ?? ""
            #expect(config.contains("local = [\"\(controlPort):127.0.0.2:\(serverPort)\", \"\(range):127.0.0.2:\(range)\"]"), "\(config)")
            let up = try f.fwd("up", "files")
            #expect(up.ok, "\(up.stderr)")
            #expect(f.waitForState("files", .up, timeout: 15) != nil, "\((try? f.fwd("status").stdout) ?? "")")

            // Passive mode both ways: EPSV (curl's default) carries only a port; with PASV, curl ignores the
            // server's address (127.0.0.2) and connects to the control connection's, 127.0.0.1.
            for flags in [[], ["--disable-epsv"]] {
                let curl = try f.run(["/usr/bin/curl", "-sS", "--max-time", "15"] + flags + ["ftp://127.0.0.1:\(controlPort)/report.txt"])
                #expect(curl.ok && curl.stdout == content, "curl \(flags): \(curl.stderr) \(FileSystem.read(f.dir + "/ftpd.log") ?? "")")
            }
            // The data connections used the forwarded passive range, not a port outside it.
            let log = FileSystem.read(f.dir + "/ftpd.log") ?? ""
            #expect(!log.contains("falling back"), "\(log)")

            let status = try f.fwd("status").stdout
            #expect(status.contains("-L \(range):127.0.0.2:\(range) (10 ports)"), "\(status)")
            #expect(!status.contains("127.0.0.1:\(passive.lowerBound + 1):"), "the range is shown once: \(status)")
            let fragment = FileSystem.read(f.paths.fragment) ?? ""
            for port in passive { #expect(fragment.contains("    LocalForward 127.0.0.1:\(port) 127.0.0.2:\(port)\n")) }
        }
    }

    @Test func aRangePartlyTakenByAnotherProgramFailsTheWholeTunnel() async throws {
        try await FwdFixture.with { f in
            try lab(f)
            let range = try PortRange.free(count: 5)
            let takenPort = range.lowerBound + 2
            let squatter = try TinyHTTPServer(port: takenPort, body: "someone else")
            defer { squatter.stop() }
            let text = "\(range.lowerBound)-\(range.upperBound):127.0.0.2:\(range.lowerBound)-\(range.upperBound)"
            try f.write(config: "[tunnels.burst]\nhost = \"lab\"\nlocal = \"\(text)\"\n")
            let up = try f.fwd("up", "burst")
            #expect(!up.ok)
            #expect(up.stderr.contains("burst: starting"), "\(up.stderr)")
            #expect(up.stderr.contains("local port \(takenPort) is already in use"), "\(up.stderr)")
            #expect(up.stderr.contains("pid \(getpid())"), "names the program holding the port: \(up.stderr)")
            #expect(f.state("burst") == .starting, "checked again until the port frees")
            // The ports added before the conflict were cancelled and the rest never added: no half tunnel.
            for port in range where port != takenPort {
                #expect(!LocalPort.isAccepting(port: port), "port \(port) still listens")
            }
            #expect(try HTTPGet.fetch(host: "127.0.0.1", port: takenPort).body == "someone else")
            let status = try f.fwd("status").stdout
            #expect(status.contains("-L \(text) (5 ports)"), "\(status)")
        }
    }

    @Test func addWritesARangeAsGivenAndRefusesABadOneChangingNothing() async throws {
        try await FwdFixture.with { f in
            #expect(try f.fwd("add", "web", "--host", "lab", "-L", "7000-7002:web.lan:8000-8002").ok)
            let written = FileSystem.read(f.configPath) ?? ""
            #expect(written.contains("local = \"7000-7002:web.lan:8000-8002\"\n"), "\(written)")
            let list = try f.fwd("list").stdout
            #expect(list.contains("-L 7000-7002:web.lan:8000-8002"), "\(list)")
            let bad = try f.fwd("add", "more", "--host", "lab", "-L", "7000-7003:web.lan:8000-8002")
            #expect(!bad.ok)
            #expect(bad.stderr.contains("the listen range has 4 ports and the target range 3; both sides need the same number"), "\(bad.stderr)")
            #expect(FileSystem.read(f.configPath) == written)
        }
    }

    @Test func psqlRunsAQueryThroughThePostgresPreset() async throws {
        guard let bin = RealTools.postgresBin,
              RealTools.available("the PostgreSQL test", [("/usr/bin/psql", "postgresql-client"), (bin + "/initdb", "postgresql-15"), (bin + "/pg_ctl", "postgresql-15")])
        else {
            if RealTools.postgresBin == nil { print("skipped the PostgreSQL test: needs postgresql-15 (apt-get install postgresql-15; .ci/run installs it)") }
            return
        }
        try await FwdFixture.with { f in
            try lab(f)
            let dir = try ServerDirectory(prefix: "fwd-pg")
            defer { dir.remove() }
            let data = dir.path + "/data", serverPort = try LocalPort.free(host: "127.0.0.2"), localPort = try LocalPort.free()
            let initdb = try ChildProcess.run(dir.asUser([bin + "/initdb", "-D", data, "-A", "trust", "-U", "fwd", "--no-sync"]), timeout: 60)
            try #require(initdb.exit == .exited(0), "\(initdb.output)")
            let start = try ChildProcess.run(dir.asUser([bin + "/pg_ctl", "-D", data, "-l", dir.path + "/server.log", "-w", "-t", "30",
                                                         "-o", "-c listen_addresses=127.0.0.2 -p \(serverPort) -k \(dir.path)", "start"]), timeout: 60)
            defer { _ = try? ChildProcess.run(dir.asUser([bin + "/pg_ctl", "-D", data, "-m", "immediate", "stop"]), timeout: 30) }
            try #require(start.exit == .exited(0), "\(start.output) \(FileSystem.read(dir.path + "/server.log") ?? "")")

            let add = try f.fwd("add", "db", "--template", "postgres", "--host", "lab", "--target", "127.0.0.2",
                                "--port", "\(localPort)", "--target-port", "\(serverPort)")
            #expect(add.ok, "\(add.stderr)")
            let up = try f.fwd("up", "db")
            #expect(up.ok, "\(up.stderr)")
            // The command line the README documents: psql -h 127.0.0.1 -p PORT -U USER DBNAME.
            let psql = try f.run(["/usr/bin/psql", "-h", "127.0.0.1", "-p", "\(localPort)", "-U", "fwd", "postgres",
                                  "-XAt", "-c", "select 'answered by ' || host(inet_server_addr()) || ':' || inet_server_port()"],
                                 environment: ["PGCONNECT_TIMEOUT": "10"])
            #expect(psql.ok, "\(psql.stderr)")
            #expect(psql.stdout == "answered by 127.0.0.2:\(serverPort)\n", "\(psql.stdout)")
        }
    }

    @Test func mysqlClientRunsAQueryThroughTheMySQLPreset() async throws {
        let tools = [("/usr/bin/mysql", "mariadb-client-core"), ("/usr/sbin/mariadbd", "mariadb-server-core"), ("/usr/bin/mariadb-install-db", "mariadb-server-core")]
        guard RealTools.available("the MySQL test", tools) else { return }
        try await FwdFixture.with { f in
            try lab(f)
            let dir = try ServerDirectory(prefix: "fwd-my")
            defer { dir.remove() }
            let data = dir.path + "/data", serverPort = try LocalPort.free(host: "127.0.0.2"), localPort = try LocalPort.free()
            let install = try ChildProcess.run(dir.asUser(["/usr/bin/mariadb-install-db", "--no-defaults", "--datadir=\(data)",
                                                           "--auth-root-authentication-method=normal", "--skip-test-db"]), timeout: 120)
            try #require(install.exit == .exited(0), "\(install.output)")
            let server = try ChildProcess(dir.asUser(["/usr/sbin/mariadbd", "--no-defaults", "--datadir=\(data)", "--bind-address=127.0.0.2",
                                                      "--port=\(serverPort)", "--socket=\(dir.path)/mysql.sock", "--pid-file=\(dir.path)/mysql.pid",
                                                      "--skip-grant-tables", "--skip-log-bin"]), outputPath: dir.path + "/server.log")
            defer {
                server.terminate()
                _ = server.waitExit(timeout: 20)
                server.kill()
            }
            #expect(f.waitForPort(serverPort, host: "127.0.0.2", timeout: 60), "mariadbd did not start: \(FileSystem.read(dir.path + "/server.log") ?? "")")

            let add = try f.fwd("add", "sql", "--template", "mysql", "--host", "lab", "--target", "127.0.0.2",
                                "--port", "\(localPort)", "--target-port", "\(serverPort)")
            #expect(add.ok, "\(add.stderr)")
            let up = try f.fwd("up", "sql")
            #expect(up.ok, "\(up.stderr)")
            // The README's command line: mysql -h 127.0.0.1 -P PORT -u USER (-h localhost would use the socket).
            let mysql = try f.run(["/usr/bin/mysql", "--no-defaults", "-h", "127.0.0.1", "-P", "\(localPort)", "-u", "root",
                                   "--connect-timeout=10", "-N", "-B", "-e", "select concat('answered on port ', @@port)"])
            #expect(mysql.ok, "\(mysql.stderr)")
            #expect(mysql.stdout == "answered on port \(serverPort)\n", "\(mysql.stdout)")
        }
    }
}
