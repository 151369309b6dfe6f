import Testing
@testable import FwdCore

/// The prompt classifier, one row per text OpenSSH 9.2 passes to SSH_ASKPASS (seen on this machine against a
/// real sshd, or read in sshconnect.c / sshconnect2.c where no server here sends it).
@Suite("Login prompt classifier")
struct LoginPromptTests {
    @Test("ssh's prompt texts map to their kinds", arguments: [
        ("fwdt1a2b3c4d@127.0.0.1's password: ", LoginPromptKind.password),
        ("Enter fwdt1a2b3c4d@127.0.0.1's old password: ", .password),
        ("Enter fwdt1a2b3c4d@127.0.0.1's new password: ", .password),
        ("Enter passphrase for key '/tmp/fwd-login-1/protected_ed25519': ", .keyPassphrase),
        ("(fwdt1a2b3c4d@127.0.0.1) Verification code: ", .keyboardInteractive),
        ("(fwdt1a2b3c4d@127.0.0.1) Open your authenticator app for user fwdt1a2b3c4d\nVerification code: ", .keyboardInteractive),
        ("(alice@bastion) Password: ", .keyboardInteractive),
        ("(alice@bastion) Passcode or option (1-3): ", .keyboardInteractive),
        ("""
        The authenticity of host '[127.0.0.1]:2222 ([127.0.0.1]:2222)' can't be established.
        ED25519 key fingerprint is SHA256:OPYUGtJdQPy95PpXn+VQFe3egJSri8XRJ1RzQMCBs/k.
        This key is not known by any other names.
        Are you sure you want to continue connecting (yes/no/[fingerprint])? 
        """, .hostKey),
        ("Please type 'yes', 'no' or the fingerprint: ", .hostKey),
        ("Warning: the ED25519 host key for 'a.lab' differs from the key for the IP address '10.0.0.1'\nOffending key for IP in /home/a/.ssh/known_hosts:3\nAre you sure you want to continue connecting (yes/no)? ", .hostKey),
        ("Enter PIN for ED25519-SK key /home/a/.ssh/id_ed25519_sk: ", .other),
        ("Allow shared connection to a.lab? ", .other),
    ])
    func kinds(text: String, kind: LoginPromptKind) {
        #expect(LoginPromptKind.classify(text) == kind)
    }

    @Test("only ssh's yes/no questions are echoed; a password never is")
    func echo() {
        #expect(!LoginPrompt(id: 1, text: "a@b's password: ", hint: .answer).echo)
        #expect(!LoginPrompt(id: 1, text: "(a@b) Verification code: ", hint: .answer).echo)
        #expect(LoginPrompt(id: 1, text: "Please type 'yes', 'no' or the fingerprint: ", hint: .answer).echo)
        #expect(LoginPrompt(id: 1, text: "Allow shared connection to a.lab? ", hint: .confirm).echo)
    }

    @Test("the wire format round-trips a request and rejects anything else")
    func wire() {
        let request = AskpassWire.request(prompt: "(a@b) Code:\nnext ", hint: "confirm")
        #expect(AskpassWire.parseRequest(request)! == (hint: "confirm", prompt: "(a@b) Code:\nnext "))
        #expect(AskpassWire.parseRequest(Array(request.dropLast())) == nil)
        #expect(AskpassWire.parseRequest(Array("OTHER\0\0x\0".utf8)) == nil)
    }
}
