# zsh-tab.zsh FPATH_DIR LINE: types LINE and TAB into an interactive zsh (on a pseudo-terminal,
# compinit loading _vfioctl from FPATH_DIR) and prints the screen text that follows: the
# completion list, one row a line, then the line as zsh redisplays it. Used by completion.pkg.ts.
zmodload zsh/zpty || exit 1
# A known terminal, whatever the caller's: the list's layout depends on it.
export TERM=xterm
zpty -b z 'zsh -f -i'
out=
# Reads until the shell has been quiet for $1 tenths of a second (or 10 s have gone).
drain() {
  local l quiet=0 t=0
  out=
  while (( quiet < $1 * 2 && t < 200 )); do
    if zpty -r -t z l; then out+=$l; quiet=0; else sleep 0.05; (( quiet++ )); fi
    (( t++ ))
  done
}
zpty -w z "PS1='> '; fpath=(${(q)1} \$fpath); autoload -U compinit; compinit -u -D; unsetopt beep listambiguous; LISTMAX=10000; COLUMNS=250; print RE''ADY"
# The echo of the input has RE''ADY: only the shell's own output has READY.
ready='' l=''
for i in {1..200}; do
  if zpty -r -t z l; then ready+=$l; [[ $ready == *READY* ]] && break; else sleep 0.05; fi
done
out=$ready
[[ $out == *READY* ]] || { print -u2 "zsh-tab: the shell did not start: $out"; exit 1 }
zpty -w -n z "$2"$'\t'
drain 8
zpty -d z
print -r -- "$out"
