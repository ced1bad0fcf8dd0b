// Prints the directory of a new fixture host tree (the unit tests' ModelHost devices: E1 and E2
// on e1000e, VN on virtio-pci, ...) for the collection's ansible-test integration target. No
// kernel model behind it: read-only commands and dry runs only. The caller removes the tree.
import { ModelHost } from '../support/model-host';

process.stdout.write(new ModelHost().f.dir + '\n');
