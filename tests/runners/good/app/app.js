/* The stand-in runner's script. */
window.frameplayer = { started: Date.now() };
