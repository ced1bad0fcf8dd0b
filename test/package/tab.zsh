# tab.zsh SHELL COMPLETION_FILE LINE [ZCOMPDUMP]: types LINE and TAB into an interactive bash or zsh on a
# pseudo-terminal (zsh/zpty), with COMPLETION_FILE loaded the way the shell loads vendor
# completions, then asks the shell for its edit buffer. Prints what the shell wrote after the TAB
# (the completion list, if any) and a last line BUFFER<the line after completion>.
# Used by test/package/completion.pkg.ts. ZCOMPDUMP: zsh's compinit keeps its scan of fpath there
# (as a user's ~/.zcompdump): without one, every call scans all of fpath again (about 1 s of CPU).
# The dump maps commands to completion functions; the function's body is still read from
# COMPLETION_FILE when TAB first needs it.
zmodload zsh/zpty || exit 1
# A known, wide terminal, whatever the caller's: the list's layout depends on it.
export TERM=xterm COLUMNS=250 LINES=100
case $1 in
bash)
  zpty -b z 'bash --norc --noprofile -i'
  # show-all-if-ambiguous: the list at the first TAB, as a second TAB would show it.
  zpty -w z "PS1='> '; bind 'set show-all-if-ambiguous on'; bind 'set completion-query-items 0'; bind 'set page-completions off'; bind -x '\"\\C-t\": printf \"\\nBUFFER<%s>\\n\" \"\$READLINE_LINE\"'; source ${(q)2}; echo RE''ADY"
  ;;
zsh)
  zpty -b z 'zsh -f -i'
  # compinit finds _vfioctl on fpath, as in vendor-completions; the list at the first TAB.
  if [[ -n $4 ]]; then init="compinit -u -d ${(q)4}"; else init='compinit -u -D'; fi
  zpty -w z "PS1='> '; fpath=(${(q)2:h} \$fpath); autoload -U compinit; $init; unsetopt beep listambiguous; LISTMAX=10000; show-buffer() { zle -I; print -r -- \$'\\n'\"BUFFER<\$BUFFER>\" }; zle -N show-buffer; bindkey '^T' show-buffer; print RE''ADY"
  ;;
*) print -u2 "tab.zsh: bash or zsh, not '$1'"; exit 2 ;;
esac
# The echo of the input has RE''ADY: only the shell's own output has READY.
out='' l=''
for i in {1..200}; do
  if zpty -r -t z l; then out+=$l; [[ $out == *READY* ]] && break; else sleep 0.05; fi
done
[[ $out == *READY* ]] || { print -u2 "tab.zsh: $1 did not start: $out"; exit 1 }
sleep 0.2
while zpty -r -t z l; do :; done
zpty -w -n z "$3"$'\t\x14'
out=''
for i in {1..200}; do
  if zpty -r -t z l; then out+=$l; [[ $out == *BUFFER\<*\>* ]] && break; else sleep 0.05; fi
done
zpty -d z
[[ $out == *BUFFER\<*\>* ]] || { print -u2 "tab.zsh: no BUFFER line from $1: $out"; exit 1 }
print -r -- "$out"
