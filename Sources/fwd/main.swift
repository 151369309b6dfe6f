import FwdCLI

await FwdMain.run()
