"""What tools/gen-docs generates from the code: the man pages (from a prose source each under
man/ plus the facts of the parsers and the configuration schema), the bash and zsh completion
of the five programs (from the parsers), and the D-Bus introspection XML (from the objects the
daemons serve). The generated files are committed; tests regenerate them and compare."""
