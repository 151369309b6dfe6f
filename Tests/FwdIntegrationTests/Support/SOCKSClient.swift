@testable import FwdCore

/// A minimal SOCKS5 client: CONNECT through the proxy, then one HTTP GET. What a browser does with `-D`.
enum SOCKSClient {
    static func fetch(proxyPort: Int, targetHost: String, targetPort: Int, timeout: Double = 5) async -> String? {
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        guard let socket = try? await ProbeSocket.connect(to: .tcp(host: "127.0.0.1", port: proxyPort), until: deadline) else { return nil }
        guard await socket.write([5, 1, 0], until: deadline) == .written,
              await socket.read(atLeast: 2, until: deadline).bytes == [5, 0] else { return nil }
        let host = Array(targetHost.utf8)
        let request: [UInt8] = [5, 1, 0, 3, UInt8(host.count)] + host + [UInt8(targetPort >> 8), UInt8(targetPort & 0xff)]
        guard await socket.write(request, until: deadline) == .written else { return nil }
        let reply = await socket.read(atLeast: 10, until: deadline).bytes
        guard reply.count >= 10, reply[1] == 0 else { return nil }
        let get = "GET / HTTP/1.1\r\nHost: \(targetHost)\r\nConnection: close\r\n\r\n"
        guard await socket.write(Array(get.utf8), until: deadline) == .written else { return nil }
        var response: [UInt8] = []
        while case .bytes(let more) = await socket.read(upTo: 4096, until: deadline) { response += more }
        return String(decoding: response, as: UTF8.self)
    }
}
