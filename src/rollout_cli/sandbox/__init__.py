"""The sandbox: the whole world (simulator, gateway, sample app, workspace) on one machine."""
