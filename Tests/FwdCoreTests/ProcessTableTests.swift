import Foundation
import Testing
@testable import FwdCore
#if canImport(Glibc)
import Glibc
#endif

@Suite struct ProcessTableTests {
    /// /proc/net/tcp is longer than one read on a busy machine; a listener past the first 4 KB is still named.
    @Test func namesTheHolderOfAPortAmongManySockets() throws {
        guard FileManager.default.fileExists(atPath: "/proc/net/tcp") else { return }
        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        for _ in 0..<80 {
            let (family, addr) = try #require(try Sock.resolve(host: "127.0.0.1", port: 0, passive: true).first)
            let fd = try Sock.makeSocket(family: family)
            fds.append(fd)
            let rc = addr.withUnsafeBytes { bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(addr.count)) }
            #expect(rc == 0 && listen(fd, 1) == 0)
        }
        let port = Sock.boundPort(fds.last!)
        #expect(ProcessTable.holder(ofPort: port)?.hasSuffix("(pid \(getpid()))") == true)
        #expect(ProcessTable.listener(onPort: port)?.pid == getpid())
    }
}
