# boot.py of a cabinet controller: runs first on every reset. Keep it tiny: a
# bug here would stop even the REPL. The application starts from main.py.
import gc

gc.collect()
